package main

import "strconv"

// eventKind is the second column of the event file.
type eventKind uint8

const (
	evBeat eventKind = iota
	evStall
	evDecode
	evMismatch
	evEviction
	evRecovery
	evIO
	evMissing
)

var eventKindNames = [...]string{"beat", "stall", "decode", "mismatch", "eviction", "recovery", "io", "missing"}

func (k eventKind) String() string { return eventKindNames[k] }

// event is one line of the event file (contract §5). Empty columns are
// written as "-": pid 0, hasNonce false, status "" and payload "" without
// hasPayloadNum.
type event struct {
	ns            int64
	kind          eventKind
	pid           uint32
	hasNonce      bool
	nonce         uint64
	status        string
	hasPayloadNum bool
	payloadNum    uint32
	payload       string
}

// appendEvent appends e as one TSV line.
func appendEvent(b []byte, e *event) []byte {
	b = strconv.AppendInt(b, e.ns, 10)
	b = append(b, '\t')
	b = append(b, eventKindNames[e.kind]...)
	b = append(b, '\t')
	if e.pid != 0 {
		b = strconv.AppendUint(b, uint64(e.pid), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, '\t')
	if e.hasNonce {
		b = strconv.AppendUint(b, e.nonce, 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, '\t')
	b = appendTSVField(b, e.status)
	b = append(b, '\t')
	switch {
	case e.hasPayloadNum:
		b = strconv.AppendUint(b, uint64(e.payloadNum), 10)
	case e.payload == "":
		b = append(b, '-')
	default:
		b = appendTSVEscaped(b, e.payload)
	}
	return append(b, '\n')
}

func appendTSVField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendTSVEscaped(b, s)
}

// appendTSVEscaped writes s with backslash, tab, newline and carriage
// return escaped, so a field can never split a line or a column.
func appendTSVEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}
