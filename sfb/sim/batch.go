package sim

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// serveBatch is the batch resource (batch_ref.md, BatchingRequests.md):
// a multipart/batching body whose parts are application/http requests,
// answered with a multipart/batching body whose parts are the responses in
// the same order. Batches, events and photos cannot be batched; a batch of
// more than Options.MaxBatchRequests is refused whole with 429.
func (s *Server) serveBatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/batching" || params["boundary"] == "" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "", "A batch must be multipart/batching with a boundary.")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16*maxBodyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "EntityTooLarge", "", "The request is too large.")
		return
	}
	var parts [][]byte
	mr := multipart.NewReader(bytes.NewReader(data), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			badRequest(w, "DeserializationFailure", "The batch could not be read: "+err.Error())
			return
		}
		body, err := io.ReadAll(p)
		if err != nil {
			badRequest(w, "DeserializationFailure", "The batch could not be read: "+err.Error())
			return
		}
		parts = append(parts, body)
	}
	if len(parts) > s.opts.MaxBatchRequests {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "TooManyRequests", "", fmt.Sprintf("Too many outstanding HTTP operations (%d in one batch, at most %d).", len(parts), s.opts.MaxBatchRequests))
		return
	}
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	for _, p := range parts {
		rec := newRecorder()
		s.batchPart(rec, r, p)
		pw, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/http; msgtype=response"}})
		if err != nil {
			panic("sim: write batch part: " + err.Error())
		}
		rec.writeTo(pw)
	}
	_ = mw.Close()
	w.Header().Set("Content-Type", `multipart/batching; boundary="`+mw.Boundary()+`"`)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Bytes())
}

// batchPart runs one batched request as if it came alone, with the batch's
// credentials.
func (s *Server) batchPart(w http.ResponseWriter, outer *http.Request, part []byte) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(part)))
	if err != nil {
		badRequest(w, "DeserializationFailure", "A batched request could not be read: "+err.Error())
		return
	}
	path := strings.TrimRight(req.URL.Path, "/")
	if !strings.HasPrefix(path, ucwaPrefix) || strings.HasSuffix(path, "/batch") || strings.HasSuffix(path, "/events") || strings.Contains(path, "/photos/") {
		badRequest(w, "", "This request cannot be part of a batch.")
		return
	}
	req = req.WithContext(outer.Context())
	req.RequestURI = ""
	req.Header.Set("Authorization", outer.Header.Get("Authorization"))
	s.batched.Add(1)
	s.serveSfB(w, req)
}

// recorder keeps a batched request's response for the batch answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// writeTo writes the response as application/http: status line, headers,
// blank line, body.
func (r *recorder) writeTo(w io.Writer) {
	r.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", r.status, http.StatusText(r.status))
	r.header.Del("Content-Length")
	_ = r.header.Write(w)
	fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", r.body.Len())
	_, _ = w.Write(r.body.Bytes())
}
