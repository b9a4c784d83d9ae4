package main

import (
	"github.com/spf13/cobra"
)

// The completion command replaces cobra's default one (cobra adds its own
// only when none exists), so that it has help like every other command.
func init() { register(newCompletionCommand) }

func newCompletionCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print the shell completion script for bash, zsh or fish",
		Long: `Print a script that teaches the shell to complete avfleet's commands and flags.
The Debian package installs none; put the output where your shell loads completions.

Exit codes: 0 printed, 2 usage error (unknown shell).`,
		Example: `  avfleet completion bash > /etc/bash_completion.d/avfleet
  avfleet completion zsh > "${fpath[1]}/_avfleet"
  avfleet completion fish > ~/.config/fish/completions/avfleet.fish`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("completion: name the shell: bash, zsh or fish")
			}
			return usagef("completion: unknown shell %q: want bash, zsh or fish", args[0])
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	shells := []struct {
		name, load, gen string
	}{
		{"bash", "source <(avfleet completion bash)", "avfleet completion bash > /etc/bash_completion.d/avfleet"},
		{"zsh", "source <(avfleet completion zsh)", `avfleet completion zsh > "${fpath[1]}/_avfleet"`},
		{"fish", "avfleet completion fish | source", "avfleet completion fish > ~/.config/fish/completions/avfleet.fish"},
	}
	for _, s := range shells {
		name := s.name
		c.AddCommand(&cobra.Command{
			Use:   name,
			Short: "Print the " + name + " completion script",
			Long: "Print the " + name + ` completion script. Load it into the current shell with
  ` + s.load + `
or install it for every new shell (as root for the system-wide location) with
  ` + s.gen + `
` + map[string]string{"bash": "\nbash needs the bash-completion package.\n", "zsh": "\nzsh needs compinit enabled (autoload -U compinit; compinit in ~/.zshrc).\n", "fish": ""}[name] + `
Exit codes: 0 printed, 2 error writing it.`,
			Example: "  " + s.load + "\n  " + s.gen,
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				out := cmd.OutOrStdout()
				switch name {
				case "bash":
					return cmd.Root().GenBashCompletionV2(out, true)
				case "zsh":
					return cmd.Root().GenZshCompletion(out)
				default:
					return cmd.Root().GenFishCompletion(out, true)
				}
			},
		})
	}
	return c
}
