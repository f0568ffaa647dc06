//go:build !linux

package main

// lockSocketPath takes no lock where there is no abstract socket namespace;
// the connect test on the path still tells a live observer.
func lockSocketPath(path string) (fd int, holder lockHolder) { return -1, holder }

func (s *vlpSocket) watchLock(p *poller) error { return nil }

func (s *vlpSocket) unwatchLock(p *poller) {}

func (s *vlpSocket) answerLock() bool { return true }
