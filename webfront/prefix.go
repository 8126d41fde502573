package webfront

import "io"

// prefixReader reads pending bytes first, then from r.
type prefixReader struct {
	pending []byte
	r       io.Reader
}

func io2Reader(pending []byte, r io.Reader) io.Reader {
	if len(pending) == 0 {
		return r
	}
	return &prefixReader{pending: append([]byte(nil), pending...), r: r}
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.pending) > 0 {
		n := copy(b, p.pending)
		p.pending = p.pending[n:]
		if len(p.pending) == 0 {
			p.pending = nil
		}
		return n, nil
	}
	return p.r.Read(b)
}
