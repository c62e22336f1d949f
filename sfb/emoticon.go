package sfb

import (
	"net/url"
	"path"
	"strings"
)

// EmoticonImage reports whether an HTML <img> with these src and class
// attributes is one of an SfB client's emoticons rather than a picture
// someone sent, and which emoticon it is: name is the emoticon's lower
// case name ("smile"), or empty when the image is an emoticon whose name
// neither attribute gives.
//
// SfB clients that draw emoticons as images mark them by class
// ("emoticon", "emoticon emoticon-smile", "swx-emoticon smile") or serve
// them from an emoticon folder ("/emoticons/Smile_40x40.png",
// "emoticon-smile.gif"); the alt attribute, when present, says more and
// is the caller's to prefer. A data: image is never recognised by its
// source: a picture pasted into a message travels that way.
func EmoticonImage(src, class string) (name string, ok bool) {
	classMarked := false
	for _, tok := range strings.Fields(strings.ToLower(class)) {
		switch {
		case tok == "emoticon" || tok == "emoticons" || tok == "emoji" ||
			strings.HasSuffix(tok, "-emoticon") || strings.HasSuffix(tok, "_emoticon"):
			classMarked = true
		case cutEmoticonPrefix(tok) != "":
			classMarked = true
			name = cutEmoticonPrefix(tok)
		case classMarked && name == "" && isEmoticonWord(tok):
			// "swx-emoticon smile": the token after the marker.
			name = tok
		}
	}
	srcName, srcMarked := emoticonFromSource(src)
	if name == "" {
		name = srcName
	}
	if !classMarked && !srcMarked {
		return "", false
	}
	return name, true
}

// emoticonPrefixes start a class or file name that names an emoticon.
var emoticonPrefixes = []string{"emoticon-", "emoticon_", "emoticons-", "emo-", "emo_"}

func cutEmoticonPrefix(s string) string {
	for _, p := range emoticonPrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok && isEmoticonWord(rest) {
			return rest
		}
	}
	return ""
}

// emoticonFromSource reads an emoticon from an image's address: marked
// when a folder of the path or the file name says "emoticon" (or
// "emoji"); the name is the file name without extension, size or
// animation suffixes ("Smile_40x40_anim.gif" is "smile").
func emoticonFromSource(src string) (name string, marked bool) {
	src = strings.TrimSpace(src)
	if src == "" || len(src) > 2048 || strings.HasPrefix(strings.ToLower(src), "data:") {
		return "", false
	}
	u, err := url.Parse(src)
	if err != nil {
		return "", false
	}
	p := strings.ToLower(u.Path)
	dir, file := path.Split(p)
	for _, seg := range strings.Split(dir, "/") {
		if strings.Contains(seg, "emoticon") || strings.Contains(seg, "emoji") {
			marked = true
		}
	}
	base := strings.TrimSuffix(file, path.Ext(file))
	if rest := cutEmoticonPrefix(base); rest != "" {
		marked = true
		base = rest
	}
	if !marked {
		return "", false
	}
	return trimEmoticonSuffixes(base), true
}

// trimEmoticonSuffixes drops what emoticon file names add to the name:
// sizes ("_40x40", "-20", "@2x") and "_anim".
func trimEmoticonSuffixes(s string) string {
	for {
		i := strings.LastIndexAny(s, "_-@")
		if i <= 0 {
			break
		}
		suffix := s[i+1:]
		if suffix != "anim" && suffix != "animated" && !isSize(suffix) {
			break
		}
		s = s[:i]
	}
	if !isEmoticonWord(s) {
		return ""
	}
	return s
}

// isSize matches "40", "40x40", "2x".
func isSize(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != 'x' {
			return false
		}
	}
	return s[0] != 'x' || len(s) > 1 && s[1] >= '0' && s[1] <= '9'
}

// isEmoticonWord is what an emoticon name looks like: a short word of
// letters and digits.
func isEmoticonWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
