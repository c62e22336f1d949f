package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/id"
)

// ProvisionLogin signs user in to SfB as address the way a migration
// portal would: the bridge's provisioning API, with the shared secret. It
// returns the new login's ID.
func (st *Stack) ProvisionLogin(ctx context.Context, user id.UserID, address, password string) (string, error) {
	var flows struct {
		Flows []bridgev2.LoginFlow `json:"flows"`
	}
	if err := st.provision(ctx, user, http.MethodGet, "/login/flows", nil, &flows); err != nil {
		return "", fmt.Errorf("list login flows: %w", err)
	}
	if len(flows.Flows) == 0 {
		return "", errors.New("the bridge offers no login flow")
	}
	type stepResp struct {
		LoginID string `json:"login_id"`
		bridgev2.LoginStep
	}
	var step stepResp
	if err := st.provision(ctx, user, http.MethodPost, "/login/start/"+flows.Flows[0].ID, struct{}{}, &step); err != nil {
		return "", fmt.Errorf("start login flow %s: %w", flows.Flows[0].ID, err)
	}
	for i := 0; step.Type != bridgev2.LoginStepTypeComplete; i++ {
		if step.Type != bridgev2.LoginStepTypeUserInput || step.UserInputParams == nil || i > 4 {
			return "", fmt.Errorf("unexpected login step %q (%s)", step.Type, step.Instructions)
		}
		input := map[string]string{}
		for _, field := range step.UserInputParams.Fields {
			switch {
			case field.Type == bridgev2.LoginInputFieldTypePassword:
				input[field.ID] = password
			default:
				// Sign-in address and user name are the same for the
				// simulator's users.
				input[field.ID] = address
			}
		}
		path := fmt.Sprintf("/login/step/%s/%s/%s", step.LoginID, step.StepID, step.Type)
		if err := st.provision(ctx, user, http.MethodPost, path, input, &step); err != nil {
			return "", fmt.Errorf("submit login step %s: %w", step.StepID, err)
		}
	}
	if step.CompleteParams == nil {
		return "", errors.New("login complete without a login ID")
	}
	return string(step.CompleteParams.UserLoginID), nil
}

// ProvisionLogout logs all of user's logins out through the provisioning
// API.
func (st *Stack) ProvisionLogout(ctx context.Context, user id.UserID) error {
	return st.provision(ctx, user, http.MethodPost, "/logout/all", struct{}{}, &struct{}{})
}

// provision calls the provisioning API on behalf of user.
func (st *Stack) provision(ctx context.Context, user id.UserID, method, path string, body, out any) error {
	base := st.Bridge.URL() + "/_matrix/provision/v3"
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path+"?user_id="+url.QueryEscape(user.String()), reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+st.ProvisioningSecret)
	req.Header.Set("Content-Type", "application/json")
	client := st.ProvisioningClient
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}
