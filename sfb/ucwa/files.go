package ucwa

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/html"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// UCWA has no file-transfer modality (ConversationModalityType_ref.md:
// Messaging, Audio, Video, ApplicationSharing, DataCollaboration,
// PanoramicVideo), and the server offers an application only the
// modalities it made itself available for: an SfB client's file transfer
// (a SIP INVITE with application/ms-filetransfer+xml and a data media
// stream) never reaches a UCWA endpoint, which cannot see it at all. What
// it can see are pictures inside HTML messages (htmlMessage), as <img>
// elements: a data: URI carrying the picture, or an address. As far as we
// know, clients built on UCWA (web, mobile) paste pictures that way; we
// have not confirmed it against a real client. Those pictures are offered
// as files (sfb.FileOffered) after the message; emoticon images are text
// (sfb.EmoticonImage) and are left to the message.

// maxInlineImages bounds the images taken from one message.
const maxInlineImages = 10

// inlineImage is one picture an HTML message shows.
type inlineImage struct {
	// src is the element's source as written.
	src string
	// data is the picture when src is a data: URI, else nil.
	data []byte
	// contentType is the data's media type, or "" for an address.
	contentType string
}

// inlineImages finds the pictures an HTML message body shows, in
// order: data: URIs of an image type, and http(s) or relative addresses.
// Emoticons, data: URIs of other types and addresses of other schemes
// are skipped.
func inlineImages(body string) []inlineImage {
	if !strings.Contains(strings.ToLower(body), "<img") {
		return nil
	}
	var out []inlineImage
	z := html.NewTokenizer(strings.NewReader(body))
	for len(out) < maxInlineImages {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if tok.Data != "img" {
			continue
		}
		var src, class string
		for _, a := range tok.Attr {
			switch strings.ToLower(a.Key) {
			case "src":
				src = strings.TrimSpace(a.Val)
			case "class":
				class = a.Val
			}
		}
		if src == "" {
			continue
		}
		if _, emoticon := sfb.EmoticonImage(src, class); emoticon {
			continue
		}
		if strings.HasPrefix(strings.ToLower(src), "data:") {
			d, err := ParseDataURI(src)
			if err != nil || !strings.HasPrefix(d.MediaType, "image/") || len(d.Data) == 0 {
				continue
			}
			out = append(out, inlineImage{src: src, data: d.Data, contentType: d.MediaType})
			continue
		}
		u, err := url.Parse(src)
		if err != nil {
			continue
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https", "":
			out = append(out, inlineImage{src: src})
		}
	}
	return out
}

// emitMessage emits a received message, then each picture its HTML shows
// as an offered file with an ID derived from the message's, so that a
// redelivered message offers the same files again under the same IDs.
func (s *session) emitMessage(m sfb.MessageReceived) {
	s.emit(m)
	for i, img := range inlineImages(m.Message.HTML) {
		s.emit(sfb.FileOffered{
			ID:           m.ID + "#image" + strconv.Itoa(i+1),
			Conversation: m.Conversation,
			From:         m.From,
			File:         s.imageFile(img, i+1),
			Time:         m.Time,
		})
	}
}

// imageFile describes an inline picture: a data: URI's bytes are at hand;
// an address on the pool (the host that serves UCWA) is fetched with the
// session's token, like the photos UCWA links to; any other address is
// not fetched (the bridge reaches out to no host but the pool) and is
// given as the picture's location.
func (s *session) imageFile(img inlineImage, n int) sfb.File {
	if img.data != nil {
		return sfb.File{
			Name:        imageName(n, img.contentType),
			ContentType: img.contentType,
			Size:        int64(len(img.data)),
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(img.data)), nil
			},
		}
	}
	s.mu.Lock()
	base := s.app.base
	s.mu.Unlock()
	abs := resolveHref(base, img.src)
	u, err := url.Parse(abs)
	f := sfb.File{Name: imageName(n, ""), Size: -1}
	if name := imageFileName(u); name != "" {
		f.Name = name
	}
	if err != nil || base == nil || !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
		f.Location = abs
		return f
	}
	f.Open = func(ctx context.Context) (io.ReadCloser, error) {
		resp, err := s.c.do(ctx, request{op: "fetch image", method: http.MethodGet, url: abs, accept: "image/*"})
		if err != nil {
			return nil, err
		}
		if ct := resp.header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err == nil && !strings.HasPrefix(mt, "image/") {
				return nil, fmt.Errorf("fetch image %s: the pool answered %s, not an image", redact(abs), mt)
			}
		}
		return io.NopCloser(bytes.NewReader(resp.body)), nil
	}
	return f
}

// imageName names the n-th picture of a message, which has no name of
// its own: "image.png", "image-2.jpg".
func imageName(n int, contentType string) string {
	name := "image"
	if n > 1 {
		name += "-" + strconv.Itoa(n)
	}
	switch contentType {
	case "image/jpeg":
		return name + ".jpg"
	case "":
		return name
	}
	if exts, _ := mime.ExtensionsByType(contentType); len(exts) > 0 {
		return name + exts[0]
	}
	return name
}

// imageFileName is the file name an address ends in, if it looks like one.
func imageFileName(u *url.URL) string {
	if u == nil {
		return ""
	}
	p := u.Path
	i := strings.LastIndexByte(p, '/')
	name := p[i+1:]
	if !strings.Contains(name, ".") {
		return ""
	}
	return name
}
