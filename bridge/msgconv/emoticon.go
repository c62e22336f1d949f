package msgconv

import (
	"strings"

	"golang.org/x/net/html"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// emoticons maps the names of SfB's emoticons, as its clients write them
// in text ("(smile)"), to the Unicode emoji Matrix clients show. Names
// are matched without regard to case. Words common in parentheses in
// prose ("(yes)", "(ok)", "(no)") are left out on purpose.
// docs/messages.md shows the table.
var emoticons = map[string]string{
	"smile": "🙂", "sad": "🙁", "laugh": "😄", "wink": "😉",
	"cry": "😢", "surprised": "😮", "tongue": "😛", "cool": "😎", "angry": "😠",
	"confused": "😕", "embarrassed": "😳", "speechless": "😐", "sleepy": "😴",
	"nerd": "🤓", "sick": "🤢", "devil": "😈", "angel": "😇", "kiss": "😘",
	"hug": "🤗", "heart": "❤️", "brokenheart": "💔", "thumbsup": "👍",
	"thumbsdown": "👎", "clap": "👏", "star": "⭐", "sun": "☀️", "rain": "🌧️",
	"coffee": "☕", "beer": "🍺", "cake": "🎂", "gift": "🎁", "flower": "🌹",
	"phone": "📞", "mail": "✉️", "music": "🎵", "clock": "🕒", "idea": "💡",
	"bulb": "💡", "wave": "👋", "party": "🎉", "bug": "🐛",
	"doh": "🤦", "facepalm": "🤦", "think": "🤔", "rofl": "🤣", "worried": "😟",
}

// maxEmoticonName is the longest name in emoticons; a longer word in
// parentheses is text.
const maxEmoticonName = len("embarrassed")

// replaceEmoticons writes the emoji for every "(name)" in s whose name is
// in emoticons; everything else is left as it is. One pass, no
// backtracking: the work is linear in s.
func replaceEmoticons(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var sb strings.Builder
	for {
		open := strings.IndexByte(s, '(')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open+1:min(len(s), open+2+maxEmoticonName)], ')')
		if end < 0 {
			sb.WriteString(s[:open+1])
			s = s[open+1:]
			continue
		}
		emoji, ok := emoticons[strings.ToLower(s[open+1:open+1+end])]
		if !ok {
			// Not a name; a "(" inside may start one.
			sb.WriteString(s[:open+1])
			s = s[open+1:]
			continue
		}
		sb.WriteString(s[:open])
		sb.WriteString(emoji)
		s = s[open+1+end+1:]
	}
	sb.WriteString(s)
	return sb.String()
}

// imageText is what an <img> becomes in text: its alt text, which SfB
// clients set to the emoticon's name ("(smile)") where they set one, or
// for an emoticon image without alt the name its class or file name
// gives (sfb.EmoticonImage), in the "(name)" form replaceEmoticons
// turns into the emoji. Any other image has no text: a transport that
// can fetch it offers it as a file of its own (sfb.FileOffered).
func imageText(n *html.Node) string {
	if alt := cleanText(attr(n, "alt")); strings.TrimSpace(alt) != "" {
		return alt
	}
	name, ok := sfb.EmoticonImage(attr(n, "src"), attr(n, "class"))
	if !ok || name == "" {
		return ""
	}
	// A name without an emoji stays as SfB writes it.
	return "(" + name + ")"
}
