package main

// The syntax of the configuration file (contract §9): OpenWrt's UCI, as
// libuci's file parser (file.c) reads /etc/config files, with two
// deliberate differences, both stricter:
//
//   - A quoted value ends on the line it starts on. libuci lets a quote run
//     over newlines (the newline becomes part of the value); `uci set`
//     refuses such values and no option here can use one, while a forgotten
//     closing quote is a common mistake that would otherwise swallow the
//     rest of the file and be reported at its end.
//   - An option given twice in one section is an error. libuci keeps the
//     last one silently; for an observer's policy that hides a mistake.
//
// What libuci does and this parser does too:
//
//   - Commands `config TYPE [NAME]`, `option KEY [VALUE]`, `list KEY [VALUE]`
//     and `package NAME`, also abbreviated c, o, l, p; one per line, or
//     several separated by ';'.
//   - A word is bare, 'single-quoted' (no escapes at all) or
//     "double-quoted", and pieces in different styles written without space
//     between them join into one word: 'a'"b"c is abc. This is how
//     `uci export` writes a single quote: 'it'\''s' is it's.
//   - Outside single quotes a backslash takes the next character literally
//     (\" is ", \\ is \, \n is n: libuci decodes no escape sequences), and a
//     backslash at the end of a line continues the word on the next line.
//   - '#' outside quotes starts a comment, also in the middle of a bare
//     word; inside quotes it is an ordinary character.
//   - An empty value (option x '' or option x) sets nothing: libuci deletes
//     the option.
//   - `config TYPE` without NAME is an anonymous section. TYPE may hold any
//     printable ASCII but space.
//
// libuci allows only [A-Za-z0-9_] in section and option names; the
// contract allows '.' and '-' in agent names as well. Such a name is
// accepted here, but `uci` and an init script's config_load then refuse the
// whole file: on OpenWrt, keep names to letters, digits and '_'.

import (
	"strings"
)

// maxConfigBytes bounds the configuration file read into memory.
const maxConfigBytes = 1 << 20

// maxSectionName is the longest section name (contract §9: 1–32 characters).
const maxSectionName = 32

// fileError is a bad configuration file: PATH:LINE: problem (or PATH:
// problem where no line is at fault).
type fileError struct {
	path string
	line int
	msg  string
}

func (e *fileError) Error() string {
	if e.line > 0 {
		return sprintf("%s:%d: %s", e.path, e.line, e.msg)
	}
	return sprintf("%s: %s", e.path, e.msg)
}

// confSection is one `config` section in file order.
type confSection struct {
	typ     string
	name    string // "" for an anonymous section
	line    int
	options []confOption
}

// confOption is one `option` or `list` line.
type confOption struct {
	key    string
	value  string
	isList bool
	line   int
}

// uciLexer walks the file one command at a time.
type uciLexer struct {
	path string
	data []byte
	pos  int
	line int // line of data[pos]
}

func (l *uciLexer) errorf(line int, format string, a ...any) error {
	return &fileError{path: l.path, line: line, msg: sprintf(format, a...)}
}

func isUCISpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

// command reads the words of the next command. It returns the line the
// command starts on and at EOF, with no words, ok false.
func (l *uciLexer) command(words []string) (_ []string, line int, ok bool, err error) {
	words = words[:0]
	line = -1
	for {
		// Skip blanks between words; a newline ends a command that has
		// words and is only an empty line otherwise.
		for l.pos < len(l.data) && isUCISpace(l.data[l.pos]) {
			l.pos++
		}
		if l.pos >= len(l.data) {
			return words, line, len(words) > 0, nil
		}
		switch c := l.data[l.pos]; {
		case c == '\n':
			l.pos++
			l.line++
			if len(words) > 0 {
				return words, line, true, nil
			}
			continue
		case c == ';':
			l.pos++
			if len(words) > 0 {
				return words, line, true, nil
			}
			continue
		case c == '#':
			for l.pos < len(l.data) && l.data[l.pos] != '\n' {
				l.pos++
			}
			continue
		case c == '\\' && l.continuation():
			continue
		}
		if line < 0 {
			line = l.line
		}
		w, err := l.word()
		if err != nil {
			return nil, line, false, err
		}
		words = append(words, w)
	}
}

// continuation consumes a backslash-newline at l.pos, if there is one.
func (l *uciLexer) continuation() bool {
	rest := l.data[l.pos+1:]
	switch {
	case len(rest) > 0 && rest[0] == '\n':
		l.pos += 2
	case len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n':
		l.pos += 3
	default:
		return false
	}
	l.line++
	return true
}

// word reads one word at l.pos: bare, quoted and escaped pieces up to a
// blank, a newline, ';' or '#' outside quotes.
func (l *uciLexer) word() (string, error) {
	var b []byte
	for l.pos < len(l.data) {
		c := l.data[l.pos]
		switch {
		case isUCISpace(c) || c == '\n' || c == ';':
			return string(b), nil
		case c == '#':
			return string(b), nil // the comment is skipped by command
		case c == '\'' || c == '"':
			start := l.line
			l.pos++
			for {
				if l.pos >= len(l.data) || l.data[l.pos] == '\n' {
					return "", l.errorf(start, "the %s quote is not closed on this line", string(c))
				}
				d := l.data[l.pos]
				if d == c {
					l.pos++
					break
				}
				if d == '\\' && c == '"' {
					if l.continuation() {
						continue
					}
					if l.pos+1 < len(l.data) && l.data[l.pos+1] != '\n' {
						l.pos++
						d = l.data[l.pos]
					}
				}
				if d < 0x20 && d != '\t' || d == 0x7f {
					return "", l.errorf(l.line, "control character %q in a quoted value", string(d))
				}
				b = append(b, d)
				l.pos++
			}
		case c == '\\':
			if l.continuation() {
				continue
			}
			l.pos++
			if l.pos >= len(l.data) {
				return string(b), nil // a backslash at the very end: nothing to escape
			}
			if d := l.data[l.pos]; d < 0x20 && d != '\t' || d == 0x7f {
				return "", l.errorf(l.line, "control character %q", string(d))
			}
			b = append(b, l.data[l.pos])
			l.pos++
		default:
			if c < 0x20 || c == 0x7f {
				return "", l.errorf(l.line, "control character %q", string(c))
			}
			b = append(b, c)
			l.pos++
		}
	}
	return string(b), nil
}

// validSectionName reports whether s is a section name of contract §9:
// 1–32 of A-Za-z0-9_.-
func validSectionName(s string) bool {
	if len(s) == 0 || len(s) > maxSectionName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isUCINameByte(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isUCINameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// validOptionName is libuci's rule for option names: [A-Za-z0-9_]+.
func validOptionName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isUCINameByte(s[i]) {
			return false
		}
	}
	return true
}

// validSectionType is libuci's rule for types: printable ASCII, no space.
func validSectionType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// parseUCIText parses the syntax of a configuration file into its sections,
// in file order; path names the file in errors. It checks the syntax
// only: which types and options exist is parseFileConfig's business.
func parseUCIText(path string, data []byte) ([]confSection, error) {
	if len(data) > maxConfigBytes {
		return nil, &fileError{path: path, msg: sprintf("larger than %d bytes", maxConfigBytes)}
	}
	l := &uciLexer{path: path, data: data, line: 1}
	var sections []confSection
	var words []string
	for {
		var line int
		var ok bool
		var err error
		words, line, ok, err = l.command(words)
		if err != nil {
			return nil, err
		}
		if !ok {
			return sections, nil
		}
		switch words[0] {
		case "package", "p":
			if len(words) != 2 {
				return nil, l.errorf(line, "package takes one name")
			}
			if len(sections) > 0 {
				return nil, l.errorf(line, "package after a section: one file holds one package")
			}
			// `uci export` writes the package name first; the file is ours
			// whatever its name, so the name is not checked.
		case "config", "c":
			if len(words) < 2 || words[1] == "" {
				return nil, l.errorf(line, "config needs a section type: config TYPE 'NAME'")
			}
			if len(words) > 3 {
				return nil, l.errorf(line, "too many words: config TYPE 'NAME'")
			}
			s := confSection{typ: words[1], line: line}
			if !validSectionType(s.typ) {
				return nil, l.errorf(line, "invalid section type %q", s.typ)
			}
			if len(words) == 3 && words[2] != "" {
				s.name = words[2]
				if !validSectionName(s.name) {
					return nil, l.errorf(line, "invalid section name %q: 1 to %d of A-Z a-z 0-9 _ . -", s.name, maxSectionName)
				}
			}
			sections = append(sections, s)
		case "option", "o", "list", "l":
			isList := words[0][0] == 'l'
			if len(sections) == 0 {
				return nil, l.errorf(line, "%s before the first section (config TYPE 'NAME')", words[0])
			}
			if len(words) < 2 || words[1] == "" {
				return nil, l.errorf(line, "%s needs a name: %s KEY 'VALUE'", words[0], words[0])
			}
			if len(words) > 3 {
				return nil, l.errorf(line, "too many words: %s KEY 'VALUE' (quote a value that holds spaces)", words[0])
			}
			if !validOptionName(words[1]) {
				return nil, l.errorf(line, "invalid option name %q: A-Z a-z 0-9 _ only", words[1])
			}
			o := confOption{key: words[1], isList: isList, line: line}
			if len(words) == 3 {
				o.value = words[2]
			}
			s := &sections[len(sections)-1]
			s.options = append(s.options, o)
		default:
			return nil, l.errorf(line, "unknown command %q (want config, option or list)", words[0])
		}
	}
}

// formatUCI writes sections back in the canonical form `uci export` uses:
// every type, name and value in single quotes, a single quote inside as
// '\”. parseUCIText reads it back to the same sections (line numbers apart).
func formatUCI(sections []confSection) string {
	var b strings.Builder
	for i, s := range sections {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("config ")
		writeUCIQuoted(&b, s.typ)
		if s.name != "" {
			b.WriteByte(' ')
			writeUCIQuoted(&b, s.name)
		}
		b.WriteByte('\n')
		for _, o := range s.options {
			if o.isList {
				b.WriteString("\tlist ")
			} else {
				b.WriteString("\toption ")
			}
			b.WriteString(o.key)
			b.WriteByte(' ')
			writeUCIQuoted(&b, o.value)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func writeUCIQuoted(b *strings.Builder, s string) {
	b.WriteByte('\'')
	b.WriteString(strings.ReplaceAll(s, "'", `'\''`))
	b.WriteByte('\'')
}
