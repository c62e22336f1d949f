package msgconv

import "strings"

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
