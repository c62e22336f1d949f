package sfb

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEmoticonImage(t *testing.T) {
	tests := []struct {
		name, src, class string
		want             string
		ok               bool
	}{
		{"emoticon folder", "https://lyncweb.contoso.com/Content/emoticons/Smile_40x40.png", "", "smile", true},
		{"animated in folder", "/emoticons/coffee_anim.gif", "", "coffee", true},
		{"retina size", "emoji/wink@2x.png", "", "wink", true},
		{"prefixed file name", "https://pool/images/emoticon-cool.gif", "", "cool", true},
		{"class with name", "x.png", "emoticon emoticon-thumbsup", "thumbsup", true},
		{"marker then name", "/e0.png", "swx-emoticon wink", "wink", true},
		{"class marker, name from folder", "/emoticons/Sad.png", "emoticon", "sad", true},
		{"class marker without a name", "data:image/png;base64,AAAA", "emoticon", "", true},
		{"pasted picture", "data:image/png;base64,AAAA", "", "", false},
		{"picture on a web server", "https://intranet/photos/smile.png", "", "", false},
		{"data URI naming a folder is still a picture", "data:image/png;base64,/emoticons/smile", "", "", false},
		{"no attributes", "", "", "", false},
		{"odd file name in folder", "/emoticons/a b%20c.png", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := EmoticonImage(tt.src, tt.class)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzEmoticonImage(f *testing.F) {
	f.Add("/emoticons/Smile_40x40_anim.gif", "emoticon")
	f.Add("data:image/png;base64,AA", "swx-emoticon wink")
	f.Add("http://[::1", "emo-")
	f.Fuzz(func(t *testing.T, src, class string) {
		name, ok := EmoticonImage(src, class)
		if !ok && name != "" {
			t.Fatalf("name %q for an image that is no emoticon", name)
		}
		if name != "" && !isEmoticonWord(name) {
			t.Fatalf("name %q is not a word", name)
		}
	})
}
