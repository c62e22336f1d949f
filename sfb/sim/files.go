package sim

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/sfb"
)

// samples holds message bodies in the shapes real SfB clients and Office
// pastes send (SfB 2015/2016 wrappers, Word lists, emoticon images, a
// picture pasted in a UCWA-based client, and hostile ones), which the
// control API sends by name. bridge/msgconv's corpus test holds what each
// must look like in Element.
//
//go:embed samples/*.html
var samples embed.FS

// Samples lists the names of the message samples.
func Samples() []string {
	entries, _ := fs.ReadDir(samples, "samples")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".html"))
	}
	sort.Strings(names)
	return names
}

// Sample returns the HTML body of the sample name.
func Sample(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return "", fmt.Errorf("sample %q: %w", name, sfb.ErrNotFound)
	}
	data, err := samples.ReadFile(path.Join("samples", name+".html"))
	if err != nil {
		return "", fmt.Errorf("sample %q: %w (see GET /sim/v1/samples)", name, sfb.ErrNotFound)
	}
	return string(data), nil
}

// PastedImageHTML is the HTML body a UCWA-based SfB client (web, mobile)
// sends for text with a picture pasted after it: the picture inline as a
// data: URI, inside the client's usual font wrapper.
func PastedImageHTML(text, contentType string, data []byte) string {
	var sb strings.Builder
	sb.WriteString(`<span style="font-family:Segoe UI;font-size:9pt;color:#000000;">`)
	if text != "" {
		sb.WriteString(strings.ReplaceAll(html.EscapeString(text), "\n", "<br>"))
		sb.WriteString("<br>")
	}
	sb.WriteString(`<img src="data:` + html.EscapeString(contentType) + `;base64,` + base64.StdEncoding.EncodeToString(data) + `">`)
	sb.WriteString(`</span>`)
	return sb.String()
}

// FileTransfer is a file a user's native SfB client received.
type FileTransfer struct {
	From sfb.URI
	Name string
	Size int64
	Time time.Time
}

// errNoFileTransferEndpoint: no endpoint of the recipient takes file
// transfers.
var errNoFileTransferEndpoint = errors.New("no endpoint of the recipient accepts file transfers")

// OfferFile sends a file from a user's native SfB client to another user,
// as SfB clients do: a separate SIP INVITE (application/ms-filetransfer+xml
// with a data media stream) that only full SfB clients accept. UCWA has no
// file-transfer modality, so the server offers it to no UCWA application:
// it reaches the recipient's native client when that is signed in, and
// fails otherwise (the sender's client shows that it could not be sent),
// whatever UCWA applications the recipient has.
func (s *Server) OfferFile(ctx context.Context, from, to sfb.URI, name string, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from, to = canonical(from), canonical(to)
	if strings.TrimSpace(name) == "" || strings.ContainsAny(name, `/\`) || len(name) > 255 {
		return fmt.Errorf("offer file %q: want a file name without folders, at most 255 bytes", name)
	}
	if size <= 0 {
		return fmt.Errorf("offer file %q: size %d: want a positive number of bytes", name, size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fu, tu := s.users[from], s.users[to]
	switch {
	case fu == nil:
		return fmt.Errorf("offer file from %s: %w", from, sfb.ErrNotFound)
	case tu == nil:
		return fmt.Errorf("offer file to %s: %w", to, sfb.ErrNotFound)
	case from == to:
		return fmt.Errorf("offer file from %s to itself: %w", from, sfb.ErrUnsupported)
	case fu.st != nil && fu.st.nativeSignedOut:
		return fmt.Errorf("offer file from %s: %w", from, errNativeSignedOut)
	case tu.st != nil && tu.st.nativeSignedOut:
		return fmt.Errorf("offer file %q from %s to %s: %w (UCWA applications cannot receive files): %w",
			name, from, to, errNoFileTransferEndpoint, sfb.ErrDeliveryFailed)
	}
	if s.fileTransfers == nil {
		s.fileTransfers = map[sfb.URI][]FileTransfer{}
	}
	s.fileTransfers[to] = append(s.fileTransfers[to], FileTransfer{From: from, Name: name, Size: size, Time: s.now()})
	return nil
}

// FileTransfers lists the files uri's native client received.
func (s *Server) FileTransfers(uri sfb.URI) []FileTransfer {
	uri = canonical(uri)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FileTransfer(nil), s.fileTransfers[uri]...)
}

type controlImage struct {
	ContentType string `json:"content_type"`
	// Data is the picture, base64.
	Data string `json:"data"`
}

type controlFileTransfer struct {
	To   string `json:"to"`
	Name string `json:"name"`
	Size int64  `json:"size"`
}

type controlFileReceived struct {
	From string    `json:"from"`
	Name string    `json:"name"`
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
}

// message is the message a control request describes: text, HTML, a
// sample by name, a pasted picture, and RTF, which needs a plain-text
// alternative (see docs/simulator.md).
func (m controlMessage) message() (sfb.Message, error) {
	msg := sfb.Message{Text: m.Text, HTML: m.HTML}
	if m.Sample != "" {
		if m.HTML != "" {
			return msg, errors.New("sample and html: give one of them")
		}
		h, err := Sample(m.Sample)
		if err != nil {
			return msg, err
		}
		msg.HTML = h
	}
	if m.Image != nil {
		if msg.HTML != "" {
			return msg, errors.New("image with html or sample: a pasted picture comes with text only")
		}
		data, err := base64.StdEncoding.DecodeString(m.Image.Data)
		if err != nil || len(data) == 0 {
			return msg, fmt.Errorf("image.data: want the picture in base64: %v", err)
		}
		if !strings.HasPrefix(m.Image.ContentType, "image/") || strings.ContainsAny(m.Image.ContentType, ";,\" ") {
			return msg, fmt.Errorf("image.content_type %q: want an image type such as image/png", m.Image.ContentType)
		}
		msg.HTML = PastedImageHTML(m.Text, m.Image.ContentType, data)
		msg.Text = ""
	}
	if m.RTF != "" && strings.TrimSpace(msg.Text) == "" && strings.TrimSpace(msg.HTML) == "" {
		// A client that formats in RTF sends a plain-text alternative;
		// UCWA endpoints accept only plain text and HTML
		// (MessageFormat_ref.md), so that is what reaches them.
		return msg, errors.New("rtf without text: an SfB client sends RTF with a plain-text alternative, and UCWA endpoints receive only that; give text too")
	}
	return msg, nil
}

// fileRoutes adds the control API's file-transfer and sample requests.
func (s *Server) fileRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /sim/v1/samples", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, obj{"samples": Samples()})
	})
	mux.HandleFunc("POST /sim/v1/users/{address}/file-transfers", func(w http.ResponseWriter, r *http.Request) {
		from, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		var ft controlFileTransfer
		if !ctlDecode(w, r, &ft) {
			return
		}
		to, ok := ctlURI(w, "to", ft.To)
		if !ok {
			return
		}
		ctlNoContent(w, s.OfferFile(r.Context(), from, to, ft.Name, ft.Size))
	})
	mux.HandleFunc("GET /sim/v1/users/{address}/file-transfers", func(w http.ResponseWriter, r *http.Request) {
		uri, ok := s.ctlUser(w, r.PathValue("address"))
		if !ok {
			return
		}
		out := []controlFileReceived{}
		for _, f := range s.FileTransfers(uri) {
			out = append(out, controlFileReceived{From: string(f.From), Name: f.Name, Size: f.Size, Time: f.Time})
		}
		writeJSON(w, http.StatusOK, out)
	})
}
