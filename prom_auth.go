package main

import (
	"bytes"
	"crypto/subtle"
	"os"

	"golang.org/x/sys/unix"
)

// The metrics endpoint's bearer token: read from --prom-token-file at
// start, compared in constant time on each request to /metrics.

// readTokenFile reads the bearer token. A file that group or others may
// read is refused: the token would protect nothing; so is one they may
// write, whose token they could set. Their execute bits alone give them
// neither.
func readTokenFile(path string) ([]byte, error) {
	fd, err := openFile(path)
	if err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, unwrapPathError(err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errorf("--prom-token-file %s: not a regular file", path)
	}
	switch perm := st.Mode & 0o777; {
	case perm&0o044 != 0:
		return nil, errorf("--prom-token-file %s: mode %04o lets group or others read it; chmod 600 it", path, perm)
	case perm&0o022 != 0:
		return nil, errorf("--prom-token-file %s: mode %04o lets group or others change it; chmod 600 it", path, perm)
	}
	buf, err := readAll(fd, path, promTokenMaxBytes)
	if err != nil {
		return nil, errorf("--prom-token-file %s: %v", path, unwrapPathError(err))
	}
	n := len(buf)
	if n > promTokenMaxBytes {
		return nil, errorf("--prom-token-file %s: longer than %d bytes", path, promTokenMaxBytes)
	}
	tok := bytes.TrimSpace(buf[:n])
	if len(tok) == 0 {
		return nil, errorf("--prom-token-file %s: the file is empty", path)
	}
	for _, c := range tok {
		if c <= ' ' || c == 0x7f {
			return nil, errorf("--prom-token-file %s: the token holds whitespace or control characters", path)
		}
	}
	return bytes.Clone(tok), nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// authorized finds the Authorization header and compares its bearer token
// in constant time.
func (p *promServer) authorized(head []byte) bool {
	const name = "authorization:"
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			i = len(head)
		}
		l := bytes.TrimSuffix(head[:i], []byte{'\r'})
		head = head[min(i+1, len(head)):]
		if len(l) < len(name) || !asciiEqualFold(l[:len(name)], name) {
			continue
		}
		v := bytes.TrimSpace(l[len(name):])
		if len(v) < 7 || !asciiEqualFold(v[:7], "bearer ") {
			return false
		}
		v = bytes.TrimSpace(v[7:])
		return subtle.ConstantTimeCompare(v, p.token) == 1
	}
	return false
}

func asciiEqualFold(b []byte, lower string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
