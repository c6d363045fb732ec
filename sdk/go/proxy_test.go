package gregormq_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cuttingProxy forwards connections to a broker and cuts each of the first `cuts` connections once
// `afterBytes` bytes of the broker's answers have gone through, so answers to produces the broker
// stored are lost.
type cuttingProxy struct {
	ln         net.Listener
	target     string
	afterBytes int64
	cuts       atomic.Int32
	cut        atomic.Int32 // connections cut so far
	wg         sync.WaitGroup
	mu         sync.Mutex
	open       []net.Conn // the client sides of the connections, for cutAll
}

// cutAll closes every connection the proxy has accepted so far.
func (p *cuttingProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.open {
		c.Close()
	}
	p.open = nil
}

func startCuttingProxy(t testing.TB, target string, cuts int32, afterBytes int64) *cuttingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, afterBytes: afterBytes}
	p.cuts.Store(cuts)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *cuttingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.open = append(p.open, c)
		p.mu.Unlock()
		cut := p.cuts.Add(-1) >= 0
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(b, c); b.Close() }()
		go func() {
			defer p.wg.Done()
			if cut {
				if _, err := io.CopyN(c, b, p.afterBytes); err == nil {
					p.cut.Add(1)
				}
			} else {
				_, _ = io.Copy(c, b)
			}
			c.Close()
			b.Close()
		}()
	}
}
