package synapse

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"maunium.net/go/mautrix/id"
)

// RegisterUser creates a local user through the shared-secret registration
// admin API (what register_new_matrix_user does) and returns it logged in
// on a new device.
func (s *Server) RegisterUser(ctx context.Context, localpart, password string, admin bool) (Account, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := s.adminRegister(ctx, http.MethodGet, nil, &nonce); err != nil {
		return Account{}, fmt.Errorf("register %s: get nonce: %w", localpart, err)
	}
	if nonce.Nonce == "" {
		return Account{}, fmt.Errorf("register %s: empty nonce", localpart)
	}
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    admin,
		"mac":      registrationMAC(s.sharedSecret, nonce.Nonce, localpart, password, admin),
	}
	var resp struct {
		UserID      id.UserID   `json:"user_id"`
		AccessToken string      `json:"access_token"`
		DeviceID    id.DeviceID `json:"device_id"`
	}
	if err := s.adminRegister(ctx, http.MethodPost, req, &resp); err != nil {
		return Account{}, fmt.Errorf("register %s: %w", localpart, err)
	}
	if resp.AccessToken == "" || resp.UserID == "" {
		return Account{}, fmt.Errorf("register %s: response without user ID or access token", localpart)
	}
	return Account{UserID: resp.UserID, AccessToken: resp.AccessToken, DeviceID: resp.DeviceID, Password: password}, nil
}

// registrationMAC is Synapse's HMAC-SHA1 over the NUL-separated nonce,
// user, password and admin flag, keyed with registration_shared_secret.
func registrationMAC(secret, nonce, user, password string, admin bool) string {
	mac := hmac.New(sha1.New, []byte(secret))
	flag := "notadmin"
	if admin {
		flag = "admin"
	}
	for i, part := range []string{nonce, user, password, flag} {
		if i > 0 {
			mac.Write([]byte{0})
		}
		mac.Write([]byte(part))
	}
	return hex.EncodeToString(mac.Sum(nil))
}

func (s *Server) adminRegister(ctx context.Context, method string, body, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+"/_synapse/admin/v1/register", reader)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /_synapse/admin/v1/register: HTTP %d: %s", method, resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
