package matrixapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"
	"maunium.net/go/mautrix/id"

	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge"
	"github.com/sfb-matrix-bridge/sfb-matrix-bridge/bridge/medialink"
)

// mediaDownloader fetches media from the homeserver as the bridge bot
// (authenticated media, /_matrix/client/v1/media/download).
type mediaDownloader func(ctx context.Context, uri id.ContentURI) (*http.Response, error)

// serveMediaLinks adds the file links that SfB users receive to the
// appservice listener. The links carry their own authorisation (the
// signature); nothing else is reachable under their path.
func serveMediaLinks(m *mxmain.BridgeMain) {
	conn, ok := m.Connector.(*bridge.Connector)
	if !ok || m.Matrix == nil || conn.MediaLinks() == nil {
		return
	}
	handleMediaLinks(m.Matrix.AS.Router, conn.MediaLinks(), m.Matrix.Bot.Download, m.Log.With().Str("component", "media links").Logger())
}

func handleMediaLinks(router *http.ServeMux, signer *medialink.Signer, download mediaDownloader, log zerolog.Logger) {
	router.Handle(medialink.Route, mediaLinkHandler(signer, download, log))
	router.Handle(medialink.EncryptedRoute, mediaLinkHandler(signer, download, log))
	// Anything else under the prefix (a truncated link) is a 404 here
	// rather than whatever else the listener would answer.
	router.Handle("GET "+medialink.PathPrefix, http.NotFoundHandler())
}

// inlineTypes are shown in the browser; everything else is offered as a
// download, so that an HTML or SVG file a Matrix user sent cannot run in
// the bridge's origin. PDF is a download too: browsers refuse to show it
// under the sandboxing Content-Security-Policy.
var inlineTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true,
	"video/mp4": true, "video/webm": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/mp4": true, "audio/webm": true, "text/plain": true,
}

// Texts for people who open a link that does not work.
const (
	linkInvalidText = "This link to a file is not valid. Ask the sender to send the file again.\n"
	linkExpiredText = "This link to a file has expired. Ask the sender to send the file again.\n"
	linkGoneText    = "This file is no longer available.\n"
	linkFailedText  = "The file could not be fetched right now. Try again later.\n"
	linkChangedText = "This file is not what the sender sent, so it is not served. Ask the sender to send the file again.\n"
)

func mediaLinkHandler(signer *medialink.Signer, download mediaDownloader, log zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		media, err := verifyLink(signer, r)
		switch {
		case errors.Is(err, medialink.ErrExpired):
			http.Error(w, linkExpiredText, http.StatusForbidden)
			return
		case err != nil:
			// The path is not logged: it is the credential.
			log.Debug().Str("remote", r.RemoteAddr).Msg("Refused a media link that does not verify")
			http.Error(w, linkInvalidText, http.StatusForbidden)
			return
		}
		resp, err := download(r.Context(), media.URI)
		if err != nil {
			var httpErr mautrix.HTTPError
			if errors.As(err, &httpErr) && httpErr.Response != nil && httpErr.Response.StatusCode == http.StatusNotFound {
				http.Error(w, linkGoneText, http.StatusNotFound)
				return
			}
			log.Warn().Err(err).Stringer("mxc", media.URI).Msg("Could not download media for a link")
			http.Error(w, linkFailedText, http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, contentType, length := io.Reader(resp.Body), resp.Header.Get("Content-Type"), resp.ContentLength
		if media.File != nil {
			plain, err := decryptMedia(resp.Body, media.File)
			if err != nil {
				log.Warn().Err(err).Stringer("mxc", media.URI).Msg("Could not decrypt media for a link")
				text := linkFailedText
				if errors.Is(err, errHashMismatch) {
					text = linkChangedText
				}
				http.Error(w, text, http.StatusBadGateway)
				return
			}
			defer plain.Close()
			body, contentType, length = plain, media.MediaType, plain.size
		}
		setMediaHeaders(w.Header(), contentType, media.Name)
		if length >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		if _, err := io.Copy(w, body); err != nil && r.Context().Err() == nil {
			log.Warn().Err(err).Stringer("mxc", media.URI).Msg("Media download broke off")
		}
	})
}

// verifyLink checks the link of a request by its kind.
func verifyLink(signer *medialink.Signer, r *http.Request) (medialink.Media, error) {
	if sealed := r.PathValue("sealed"); sealed != "" {
		return signer.VerifyEncrypted(r.PathValue("server"), r.PathValue("mediaID"), r.PathValue("expiry"), r.PathValue("mac"), sealed, r.PathValue("name"))
	}
	return signer.Verify(r.PathValue("server"), r.PathValue("mediaID"), r.PathValue("expiry"), r.PathValue("mac"), r.PathValue("name"))
}

// setMediaHeaders sets the type the homeserver gave (reduced to its media
// type, unknown as octet-stream), inline only for types that cannot run
// script, and the file name in both forms of RFC 6266: an ASCII fallback
// and the UTF-8 name (RFC 5987).
func setMediaHeaders(h http.Header, contentType, name string) {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType == "" {
		mediaType = "application/octet-stream"
	}
	disposition := "attachment"
	if inlineTypes[mediaType] {
		disposition = "inline"
	}
	h.Set("Content-Type", mediaType)
	h.Set("Content-Disposition", contentDisposition(disposition, name))
	// A file shown inline runs nothing and loads nothing.
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'; img-src 'self'; media-src 'self'")
	h.Set("Cache-Control", "private, no-store")
}

func contentDisposition(disposition, name string) string {
	var fallback strings.Builder
	for _, r := range name {
		switch {
		case r < 0x20 || r >= 0x7f || r == '"' || r == '\\' || r == '%':
			fallback.WriteByte('_')
		default:
			fallback.WriteRune(r)
		}
	}
	return disposition + `; filename="` + fallback.String() + `"; filename*=UTF-8''` + rfc5987Escape(name)
}

// rfc5987Escape percent-encodes everything but RFC 5987's attr-char.
func rfc5987Escape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
