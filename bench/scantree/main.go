// Command scantree writes the benchmark tree for bench/scan.sh: N files in
// nested directories, sizes from -min to -max bytes. 90% of the files are
// small (log-uniform up to 64 KiB, like source files, configs, scripts), 10%
// large (log-uniform from 64 KiB to -max, like binaries and archives), so a
// tree of 20,000 files holds about 2.5 GB. A third of the files are text,
// the rest random bytes. The same seed writes the same tree.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	n := flag.Int("n", 20000, "number of files")
	lo := flag.Int64("min", 100, "smallest file size in bytes")
	hi := flag.Int64("max", 5_000_000, "largest file size in bytes")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: scantree [-n N] [-min B] [-max B] [-seed S] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	rng := rand.New(rand.NewChaCha8([32]byte{byte(*seed), byte(*seed >> 8), byte(*seed >> 16)}))
	logUniform := func(a, b float64) int64 {
		return int64(math.Exp(math.Log(a) + rng.Float64()*(math.Log(b)-math.Log(a))))
	}
	const split = 64 << 10
	words := []byte("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\n")
	var total int64
	buf := make([]byte, *hi)
	for i := range *n {
		size := logUniform(float64(*lo), split)
		if rng.IntN(10) == 0 {
			size = logUniform(split, float64(*hi))
		}
		b := buf[:size]
		if i%3 == 0 {
			for j := range b {
				b[j] = words[j%len(words)]
			}
		} else {
			for j := 0; j+8 <= len(b); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					b[j+k] = byte(v >> (8 * k))
				}
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("e%02d", (i/20)%10), fmt.Sprintf("f%05d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		total += size
	}
	fmt.Println(total)
}
