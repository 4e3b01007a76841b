package portable

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"google.golang.org/grpc"
)

// workerPool is a Beam Fn API external worker pool (what
// --environment_type=EXTERNAL --environment_config=host:port points at) that
// starts Beam's Go SDK boot program once per worker: the same program, in
// the same mode, as the Go SDK container's `/opt/apache/beam/boot
// --worker_pool` sidecar on Flink. Unlike Beam's own pool it gives boot a
// private --semi_persist_dir and a working directory.
type workerPool struct {
	fnpb.UnimplementedBeamFnExternalWorkerPoolServer

	boot, dir, semi string
	log             *syncBuffer

	mu      sync.Mutex
	workers map[string]*bootProc
}

type bootProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startWorkerPool serves a worker pool on a free loopback port and returns
// its address. Workers run in a temporary directory where "testdata" links
// to root/testdata, so relative paths resolve as for the submitting
// children (boot also writes pipeline_options.json into its working
// directory). boot copies each staged worker binary to a /tmp/bin*
// directory it names itself; the cleanup removes the copies of the staged
// binaries (and nothing else).
func startWorkerPool(t *testing.T, boot, root string, staged []string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "testdata"), filepath.Join(dir, "testdata")); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &workerPool{boot: boot, dir: dir, semi: t.TempDir(), log: &syncBuffer{}, workers: map[string]*bootProc{}}
	srv := grpc.NewServer()
	fnpb.RegisterBeamFnExternalWorkerPoolServer(srv, p)
	go srv.Serve(lis)
	before := bootCopies()
	t.Cleanup(func() {
		srv.Stop()
		p.stopAll()
		removeBootCopies(t, before, staged)
		if t.Failed() {
			t.Logf("worker pool (boot and worker) output:\n%s", tail(p.log.String(), 6000))
		}
	})
	return lis.Addr().String()
}

// StartWorker starts boot for one worker, with the flags Beam's pool passes.
func (p *workerPool) StartWorker(_ context.Context, req *fnpb.StartWorkerRequest) (*fnpb.StartWorkerResponse, error) {
	cmd := exec.Command(p.boot,
		"--id="+req.GetWorkerId(),
		"--control_endpoint="+req.GetControlEndpoint().GetUrl(),
		"--artifact_endpoint="+req.GetArtifactEndpoint().GetUrl(),
		"--provision_endpoint="+req.GetProvisionEndpoint().GetUrl(),
		"--logging_endpoint="+req.GetLoggingEndpoint().GetUrl(),
		"--semi_persist_dir="+p.semi)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = groupSysProcAttr()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.workers[req.GetWorkerId()]; ok {
		return &fnpb.StartWorkerResponse{Error: "worker " + req.GetWorkerId() + " already exists"}, nil
	}
	if err := cmd.Start(); err != nil {
		return &fnpb.StartWorkerResponse{Error: "start boot: " + err.Error()}, nil
	}
	bp := &bootProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(bp.done) }()
	p.workers[req.GetWorkerId()] = bp
	return &fnpb.StartWorkerResponse{}, nil
}

// StopWorker stops boot and the worker it started.
func (p *workerPool) StopWorker(_ context.Context, req *fnpb.StopWorkerRequest) (*fnpb.StopWorkerResponse, error) {
	p.mu.Lock()
	bp, ok := p.workers[req.GetWorkerId()]
	delete(p.workers, req.GetWorkerId())
	p.mu.Unlock()
	if ok {
		bp.stop()
	}
	return &fnpb.StopWorkerResponse{}, nil
}

func (p *workerPool) stopAll() {
	p.mu.Lock()
	ws := p.workers
	p.workers = map[string]*bootProc{}
	p.mu.Unlock()
	for _, bp := range ws {
		bp.stop()
	}
}

// stop gives a worker that is finishing on its own a moment, then kills
// boot's process group (boot and the worker binary it runs).
func (bp *bootProc) stop() {
	select {
	case <-bp.done:
		return
	case <-time.After(2 * time.Second):
	}
	killGroup(bp.cmd.Process)
	select {
	case <-bp.done:
	case <-time.After(10 * time.Second):
	}
}

// bootCopies lists the directories boot may have copied a worker binary to.
func bootCopies() map[string]bool {
	dirs, _ := filepath.Glob("/tmp/bin*")
	out := map[string]bool{}
	for _, d := range dirs {
		out[d] = true
	}
	return out
}

// removeBootCopies removes the /tmp/bin* directories created since before
// that hold only a file "worker" identical to one of the staged binaries.
func removeBootCopies(t *testing.T, before map[string]bool, staged []string) {
	sums := map[int64][][]byte{}
	for _, s := range staged {
		fi, err := os.Stat(s)
		if err != nil {
			continue
		}
		if sum, err := fileSum(s); err == nil {
			sums[fi.Size()] = append(sums[fi.Size()], sum)
		}
	}
	for d := range bootCopies() {
		if before[d] {
			continue
		}
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) != 1 || entries[0].Name() != "worker" {
			continue
		}
		w := filepath.Join(d, "worker")
		fi, err := os.Stat(w)
		if err != nil || len(sums[fi.Size()]) == 0 {
			continue
		}
		sum, err := fileSum(w)
		if err != nil {
			continue
		}
		for _, s := range sums[fi.Size()] {
			if bytes.Equal(s, sum) {
				if err := os.RemoveAll(d); err != nil {
					t.Logf("remove boot's worker copy %s: %v", d, err)
				}
				break
			}
		}
	}
}

func fileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
