package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func registry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sfb_test_total", Help: "A test counter."})
	c.Add(3)
	reg.MustRegister(c)
	return reg
}

func get(t *testing.T, url, auth string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body), resp.Header
}

func listen(t *testing.T, token string) string {
	t.Helper()
	srv, err := Listen("127.0.0.1:0", Handler(registry(t), token, zerolog.Nop()), zerolog.Nop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	return "http://" + srv.Addr().String()
}

func TestServesTheRegistry(t *testing.T) {
	base := listen(t, "")
	status, body, _ := get(t, base+Path, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "sfb_test_total 3")
	status, _, _ = get(t, base+"/other", "")
	assert.Equal(t, http.StatusNotFound, status, "nothing else is served")
}

func TestTokenIsRequiredWhenSet(t *testing.T) {
	const token = "0123456789abcdef-token"
	base := listen(t, token)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + token, "Bearer " + token + "x", token} {
		status, body, header := get(t, base+Path, auth)
		assert.Equal(t, http.StatusUnauthorized, status, "%q", auth)
		assert.NotContains(t, body, "sfb_test_total", "no data without the token (%q)", auth)
		assert.True(t, strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer"))
	}
	for _, auth := range []string{"Bearer " + token, "bearer " + token} {
		status, body, _ := get(t, base+Path, auth)
		assert.Equal(t, http.StatusOK, status, "%q", auth)
		assert.Contains(t, body, "sfb_test_total 3")
	}
}

func TestListenFailsOnATakenAddress(t *testing.T) {
	base := listen(t, "")
	_, err := Listen(strings.TrimPrefix(base, "http://"), http.NotFoundHandler(), zerolog.Nop())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "metrics listener on 127.0.0.1:")
}
