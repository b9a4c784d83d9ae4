package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/avfleet/avfleet/internal/mirror/api"
	"github.com/avfleet/avfleet/internal/tlsutil"
)

// broadcaster holds the served set and wakes every watcher at once when it
// changes: each waiter selects on the same channel, which is closed (one
// operation, whatever the number of waiters) and replaced on publish.
type broadcaster struct {
	mu      sync.Mutex
	set     *servedSet
	changed chan struct{}
}

func newBroadcaster(set *servedSet) *broadcaster {
	return &broadcaster{set: set, changed: make(chan struct{})}
}

func (b *broadcaster) load() *servedSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set
}

// current returns the set and a channel closed when it is replaced.
func (b *broadcaster) current() (*servedSet, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set, b.changed
}

// publish replaces the set; it reports whether the set changed.
func (b *broadcaster) publish(set *servedSet) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.set != nil && b.set.dir == set.dir && b.set.index.Generation == set.index.Generation {
		return false
	}
	b.set = set
	close(b.changed)
	b.changed = make(chan struct{})
	return true
}

// pathClass groups request paths for metrics (bounded label values).
func pathClass(p string) string {
	switch {
	case p == api.ManifestPath:
		return "manifest"
	case p == api.WatchPath:
		return "watch"
	case strings.HasPrefix(p, "/api/v1/nodes/"):
		return "report"
	case p == "/dns.txt":
		return "dns"
	case strings.HasSuffix(p, ".sign"):
		return "sign"
	case strings.HasSuffix(p, ".cdiff"):
		return "cdiff"
	case strings.HasSuffix(p, ".cvd"):
		return "cvd"
	case strings.HasSuffix(p, ".cld"):
		return "cld"
	case strings.HasSuffix(p, ".cud"):
		return "cud"
	}
	return "other"
}

// countingWriter records status and body bytes for metrics. It passes
// ReadFrom through, so http.ServeContent of an *os.File still reaches
// sendfile on a plain connection.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests by class and status, and bytes served.
func (d *Daemon) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if cw.status == 0 {
			cw.status = http.StatusOK
		}
		class := pathClass(r.URL.Path)
		d.metrics.requests.WithLabelValues(class, strconv.Itoa(cw.status)).Inc()
		d.metrics.bytes.WithLabelValues(class).Add(float64(cw.n))
		d.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", cw.status, "bytes", cw.n,
			"remote", r.RemoteAddr, "range", r.Header.Get("Range"), "if_modified_since", r.Header.Get("If-Modified-Since"))
	})
}

// publicHandler serves database files and the API. plain is the legacy
// listener without TLS: no node reports there.
func (d *Daemon) publicHandler(plain bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(api.ManifestPath, d.serveManifest)
	mux.HandleFunc(api.WatchPath, d.serveWatch)
	mux.HandleFunc("/api/v1/nodes/{node}/report", func(w http.ResponseWriter, r *http.Request) {
		d.serveReport(w, r, plain)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such API path: "+r.URL.Path)
	})
	mux.HandleFunc("/dns.txt", d.serveDNSTXT)
	mux.HandleFunc("/{name}", d.serveFile)
	return d.instrument(mux)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.Error{Error: msg})
}

func onlyGetHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// serveFile answers /{db}.cvd, .cld, .cud, /{db}-{n}.cdiff and .sign files
// from the published set, with http.ServeContent semantics (Range,
// If-Modified-Since against the header build time, ETag).
func (d *Daemon) serveFile(w http.ResponseWriter, r *http.Request) {
	if !onlyGetHead(w, r) {
		return
	}
	name := r.PathValue("name")
	set := d.bc.load()
	f := set.files[name]
	if !isServableName(name) || f == nil || set.dir == "" {
		http.NotFound(w, r)
		return
	}
	fh, err := os.Open(filepath.Join(set.dir, name))
	if err != nil {
		// The set was pruned under us: only possible when this daemon has
		// not noticed a newer set for minutes. Ask the client to retry.
		d.log.Error("serve file: published set is gone", "file", name, "err", err)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "verified set changed, retry", http.StatusServiceUnavailable)
		return
	}
	defer fh.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if len(f.SHA256) >= 32 {
		h.Set("ETag", `"`+f.SHA256[:32]+`"`)
	}
	switch f.Kind {
	case "cvd", "cld", "cud":
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, name, f.ModTime, fh)
}

// serveDNSTXT answers /dns.txt with the fields of current.cvd.clamav.net:
// version:main:daily:time:warning:flevel:safebrowsing:bytecode.
func (d *Daemon) serveDNSTXT(w http.ResponseWriter, r *http.Request) {
	if !onlyGetHead(w, r) {
		return
	}
	set := d.bc.load()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = io.WriteString(w, dnsTXT(set.manifest, time.Now())+"\n")
}

func dnsTXT(m api.Manifest, now time.Time) string {
	v := map[string]uint{}
	var flevel uint
	for _, db := range m.Databases {
		v[db.Name] = db.Version
		if db.FLevel > flevel {
			flevel = db.FLevel
		}
	}
	return fmt.Sprintf("0.0.0:%d:%d:%d:0:%d:%d:%d", v["main"], v["daily"], now.Unix(), flevel, v["safebrowsing"], v["bytecode"])
}

func (d *Daemon) writeManifest(w http.ResponseWriter, r *http.Request, set *servedSet) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", `"`+set.manifest.ETag+`"`)
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Trim(inm, `" `) == set.manifest.ETag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(set.manifestJSON)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(set.manifestJSON)
	}
}

func (d *Daemon) serveManifest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		apiError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	d.writeManifest(w, r, d.bc.load())
}

// serveWatch is the long-poll: answer at once if the client's etag is old,
// else wait for a publish, the timeout, the client leaving or shutdown.
func (d *Daemon) serveWatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		apiError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	have := strings.Trim(r.URL.Query().Get("version"), `" `)
	d.metrics.watchers.Inc()
	defer d.metrics.watchers.Dec()
	timer := time.NewTimer(d.watchTimeout)
	defer timer.Stop()
	for {
		set, changed := d.bc.current()
		if set.manifest.ETag != have {
			r.Header.Del("If-None-Match")
			d.writeManifest(w, r, set)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			w.Header().Set("ETag", `"`+set.manifest.ETag+`"`)
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		case <-d.stopping:
			w.Header().Set("Retry-After", "5")
			apiError(w, http.StatusServiceUnavailable, "mirror is shutting down")
			return
		}
	}
}

// serveReport stores a node's report. The node is the certificate's CN; a
// node can only write its own.
func (d *Daemon) serveReport(w http.ResponseWriter, r *http.Request, plain bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		apiError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	node := r.PathValue("node")
	if plain {
		apiError(w, http.StatusForbidden, "node reports need the mutual TLS listener (a client certificate names the node)")
		return
	}
	cn, err := tlsutil.RequestPeerName(r)
	if err != nil {
		apiError(w, http.StatusForbidden, "report for "+node+": "+err.Error())
		return
	}
	if cn != node {
		apiError(w, http.StatusForbidden, fmt.Sprintf("certificate is for node %q; a node may only write its own report, not %q", cn, node))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxReportBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report is larger than %d bytes", api.MaxReportBytes))
			return
		}
		apiError(w, http.StatusBadRequest, "read report: "+err.Error())
		return
	}
	rep, err := parseReport(body, node)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now().UTC()
	if err := d.store.State().PutNodeReport(node, now, body); err != nil {
		d.log.Error("store node report", "node", node, "err", err)
		apiError(w, http.StatusInternalServerError, "could not store the report, retry later")
		return
	}
	d.nodes.put(NodeRecord{Node: node, ReceivedAt: now, Report: body})
	d.metrics.reportsTotal.Inc()
	d.log.Debug("node report", "node", node, "databases", rep.Databases, "last_error", rep.LastError)
	w.WriteHeader(http.StatusNoContent)
}

// parseReport checks a report body: JSON of the documented shape, naming
// the node of the URL. Unknown fields are allowed (newer agents).
func parseReport(body []byte, node string) (*api.Report, error) {
	var rep api.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("report is not valid JSON of the documented shape: %v", err)
	}
	if rep.Node == "" {
		return nil, errors.New(`report: "node" is missing`)
	}
	if rep.Node != node {
		return nil, fmt.Errorf("report: node %q in the body differs from %q in the URL", rep.Node, node)
	}
	for name := range rep.Databases {
		if !validDBName(name) {
			return nil, fmt.Errorf("report: %q is not a database name", name)
		}
	}
	return &rep, nil
}

// adminHandler serves /metrics, /healthz and /readyz.
func (d *Daemon) adminHandler(metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	if metricsHandler != nil {
		mux.Handle("/metrics", metricsHandler)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if len(d.bc.load().manifest.Databases) == 0 {
			http.Error(w, "no verified databases yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}
