package ucwa

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// maxBatchParts bounds the requests of one batch. The server allows 100
// outstanding requests per user across batches (BatchingRequests.md); a
// session sends one batch at a time, and its other requests stay below
// MaxOutstandingPerUser, so 50 leaves room.
const maxBatchParts = 50

// batchPart is one response of a batch; err says why the part could not
// be read (the other parts are still good).
type batchPart struct {
	status int
	body   []byte
	err    error
}

// encodeBatch writes GETs of urls as a multipart/batching body
// (batch_ref.md); it returns the body and its Content-Type.
func encodeBatch(urls []string) ([]byte, string, error) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, "", fmt.Errorf("batch: parse %s: %w", redact(raw), err)
		}
		w, err := mw.CreatePart(map[string][]string{"Content-Type": {"application/http; msgtype=request"}})
		if err != nil {
			return nil, "", fmt.Errorf("batch: %w", err)
		}
		fmt.Fprintf(w, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n\r\n", u.RequestURI(), u.Host)
	}
	if err := mw.Close(); err != nil {
		return nil, "", fmt.Errorf("batch: %w", err)
	}
	return b.Bytes(), "multipart/batching; boundary=" + mw.Boundary(), nil
}

// decodeBatch reads a multipart/batching response: one part per request,
// in order. A part that is not a readable HTTP response has err set; an
// unreadable envelope is an error for the whole batch.
func decodeBatch(contentType string, body []byte) ([]batchPart, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("batch response: content type %q: %w", contentType, err)
	}
	if mt != "multipart/batching" && !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil, fmt.Errorf("batch response: content type %q, want multipart/batching with a boundary", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []batchPart
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return parts, fmt.Errorf("batch response: part %d: %w", len(parts)+1, err)
		}
		parts = append(parts, readBatchPart(p))
	}
}

func readBatchPart(p io.Reader) batchPart {
	data, err := io.ReadAll(io.LimitReader(p, MaxBodyBytes+1))
	if err != nil {
		return batchPart{err: fmt.Errorf("read part: %w", err)}
	}
	if len(data) > MaxBodyBytes {
		return batchPart{err: fmt.Errorf("part larger than %d bytes", MaxBodyBytes)}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
	if err != nil {
		return batchPart{err: fmt.Errorf("read part's HTTP response: %w", err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return batchPart{status: resp.StatusCode, err: fmt.Errorf("read part's body: %w", err)}
	}
	return batchPart{status: resp.StatusCode, body: b}
}

// getMany GETs urls: one plain GET for one, batches of at most
// maxBatchParts otherwise. A batch refused with 429 (too many outstanding
// requests) is split in two and sent again. The parts are in the order of
// urls; a part whose request failed has err set.
func (s *session) getMany(ctx context.Context, batchURL string, urls []string) []batchPart {
	out := make([]batchPart, 0, len(urls))
	for len(urls) > 0 {
		n := min(len(urls), maxBatchParts)
		out = append(out, s.getBatch(ctx, batchURL, urls[:n])...)
		urls = urls[n:]
	}
	return out
}

func (s *session) getBatch(ctx context.Context, batchURL string, urls []string) []batchPart {
	fail := func(err error) []batchPart {
		out := make([]batchPart, len(urls))
		for i := range out {
			out[i].err = err
		}
		return out
	}
	if len(urls) == 1 || batchURL == "" {
		out := make([]batchPart, len(urls))
		for i, u := range urls {
			rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
			resp, err := s.c.do(rctx, request{op: "get presence", method: http.MethodGet, url: u})
			cancel()
			if err != nil {
				out[i] = batchPart{status: statusOf(err), err: err}
				continue
			}
			out[i] = batchPart{status: resp.status, body: resp.body}
		}
		return out
	}
	body, ct, err := encodeBatch(urls)
	if err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithTimeout(ctx, s.t.cfg.RequestTimeout)
	resp, err := s.c.do(rctx, request{op: "batch", method: http.MethodPost, url: batchURL, body: body, contentType: ct, accept: "multipart/batching"})
	cancel()
	if statusOf(err) == http.StatusTooManyRequests {
		half := len(urls) / 2
		return append(s.getBatch(ctx, batchURL, urls[:half]), s.getBatch(ctx, batchURL, urls[half:])...)
	}
	if err != nil {
		return fail(err)
	}
	parts, err := decodeBatch(resp.header.Get("Content-Type"), resp.body)
	if err != nil && len(parts) == 0 {
		return fail(err)
	}
	if len(parts) != len(urls) {
		s.log.Warn().Int("requests", len(urls)).Int("responses", len(parts)).AnErr("error", err).Msg("Batch response does not answer every request")
	}
	for len(parts) < len(urls) {
		parts = append(parts, batchPart{err: errors.New("batch response has no part for this request")})
	}
	return parts[:len(urls)]
}
