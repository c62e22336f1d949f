package msgconv

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// RTFToText reduces an RTF message (some SfB and Lync clients send
// text/rtf) to its text, one line per paragraph. Formatting, fonts,
// colours, pictures and embedded objects are dropped; a field (such as a
// hyperlink) keeps the text it shows. Input that is not RTF is returned
// as text, cleaned.
func RTFToText(in string) string {
	r := rtfReader{in: in, codepage: charmap.Windows1252}
	r.run()
	return strings.TrimSpace(tidyLines(cleanText(r.sb.String())))
}

// rtfSkippedDestinations are groups whose content is not message text.
var rtfSkippedDestinations = map[string]bool{
	"fonttbl": true, "colortbl": true, "stylesheet": true, "info": true, "pict": true,
	"object": true, "header": true, "footer": true, "headerl": true, "headerr": true,
	"footerl": true, "footerr": true, "generator": true, "themedata": true,
	"colorschememapping": true, "latentstyles": true, "datastore": true, "listtable": true,
	"listoverridetable": true, "rsidtbl": true, "xmlnstbl": true, "mmathPr": true,
	"fldinst": true, "filetbl": true, "revtbl": true, "listtext": true, "pntext": true,
}

// rtfCodepages are the code pages \ansicpg can name that the reader
// decodes \'hh escapes in; others fall back to Windows-1252.
var rtfCodepages = map[int]*charmap.Charmap{
	1250: charmap.Windows1250, 1251: charmap.Windows1251, 1252: charmap.Windows1252,
	1253: charmap.Windows1253, 1254: charmap.Windows1254, 1255: charmap.Windows1255,
	1256: charmap.Windows1256, 1257: charmap.Windows1257, 1258: charmap.Windows1258,
}

// rtfGroup is the state a group restores when it ends.
type rtfGroup struct {
	skip bool
	// uc is how many bytes of fallback follow each \uN.
	uc int
}

type rtfReader struct {
	in       string
	pos      int
	sb       strings.Builder
	codepage *charmap.Charmap
	group    rtfGroup
	stack    []rtfGroup
	// pendingSkip counts fallback bytes after \uN still to skip.
	pendingSkip int
	// highSurrogate is the first half of a code point above U+FFFF,
	// which RTF writes as two \uN.
	highSurrogate rune
	// groupStart is set right after "{", where "\*" marks an ignorable
	// destination.
	groupStart bool
}

func (r *rtfReader) run() {
	r.group.uc = 1
	for r.pos < len(r.in) {
		c := r.in[r.pos]
		switch c {
		case '{':
			r.pos++
			r.stack = append(r.stack, r.group)
			r.groupStart = true
			r.pendingSkip = 0
			continue
		case '}':
			r.pos++
			if n := len(r.stack); n > 0 {
				r.group = r.stack[n-1]
				r.stack = r.stack[:n-1]
			}
			r.pendingSkip = 0
		case '\\':
			r.control()
		case '\r', '\n':
			// Line ends in RTF source are not text.
			r.pos++
		default:
			r.pos++
			r.char(string(c), true)
		}
		r.groupStart = false
	}
}

// char writes text unless the group is skipped or it is a \uN fallback;
// raw is set for a byte of the source, which is decoded if not ASCII.
func (r *rtfReader) char(s string, raw bool) {
	if r.pendingSkip > 0 {
		r.pendingSkip--
		return
	}
	if r.group.skip {
		return
	}
	if raw && s[0] >= utf8.RuneSelf {
		s = string(r.codepage.DecodeByte(s[0]))
	}
	r.sb.WriteString(s)
}

// control reads one control word or symbol at r.pos (a backslash).
func (r *rtfReader) control() {
	atGroupStart := r.groupStart
	r.pos++
	if r.pos >= len(r.in) {
		return
	}
	c := r.in[r.pos]
	if !isASCIILetter(c) {
		r.pos++
		switch c {
		case '\\', '{', '}':
			r.char(string(c), false)
		case '~':
			r.char("\u00a0", false)
		case '_':
			r.char("\u2011", false)
		case '\'':
			if r.pos+2 <= len(r.in) {
				if b, err := strconv.ParseUint(r.in[r.pos:r.pos+2], 16, 8); err == nil {
					r.pos += 2
					r.char(string([]byte{byte(b)}), true)
				}
			}
		case '*':
			if atGroupStart {
				r.group.skip = true
			}
		case '\n', '\r':
			r.paragraph()
		}
		// \- (optional hyphen), \| and the like show nothing.
		return
	}
	start := r.pos
	for r.pos < len(r.in) && isASCIILetter(r.in[r.pos]) && r.pos-start < 32 {
		r.pos++
	}
	word := r.in[start:r.pos]
	numStart := r.pos
	if r.pos < len(r.in) && r.in[r.pos] == '-' {
		r.pos++
	}
	for r.pos < len(r.in) && r.in[r.pos] >= '0' && r.in[r.pos] <= '9' && r.pos-numStart < 10 {
		r.pos++
	}
	param, hasParam := 0, r.pos > numStart
	if hasParam {
		param, _ = strconv.Atoi(r.in[numStart:r.pos])
	}
	if r.pos < len(r.in) && r.in[r.pos] == ' ' {
		// The delimiter of a control word is part of it.
		r.pos++
	}
	switch {
	case rtfSkippedDestinations[word]:
		r.group.skip = true
	case word == "par" || word == "line" || word == "row" || word == "sect" || word == "page":
		r.paragraph()
	case word == "tab" || word == "cell":
		r.char("\t", false)
	case word == "emdash":
		r.char("—", false)
	case word == "endash":
		r.char("–", false)
	case word == "bullet":
		r.char("•", false)
	case word == "lquote":
		r.char("‘", false)
	case word == "rquote":
		r.char("’", false)
	case word == "ldblquote":
		r.char("“", false)
	case word == "rdblquote":
		r.char("”", false)
	case word == "uc" && hasParam:
		r.group.uc = max(0, min(param, 8))
	case word == "u" && hasParam:
		if param < 0 {
			// RTF writes code points above 32767 as negative.
			param += 65536
		}
		r.unicode(rune(param))
	case word == "ansicpg" && hasParam:
		if cp, ok := rtfCodepages[param]; ok {
			r.codepage = cp
		}
	case word == "bin" && hasParam && param > 0:
		// Binary data: never text.
		r.pos = min(len(r.in), r.pos+param)
	}
}

// unicode writes the character of \uN and skips its fallback.
func (r *rtfReader) unicode(c rune) {
	high := r.highSurrogate
	r.highSurrogate = 0
	switch {
	case utf16.IsSurrogate(c) && c < 0xdc00:
		r.highSurrogate = c
	case utf16.IsSurrogate(c):
		r.char(string(utf16.DecodeRune(high, c)), false)
	default:
		r.char(string(c), false)
	}
	r.pendingSkip = r.group.uc
}

func (r *rtfReader) paragraph() {
	if r.group.skip {
		return
	}
	r.sb.WriteByte('\n')
}

func isASCIILetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
