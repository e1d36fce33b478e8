package httpui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/keyway-dev/keyway/portal/clientinfo"
	"github.com/keyway-dev/keyway/portal/hook"
	"github.com/keyway-dev/keyway/portal/store"
)

// apiHook is the hook as the API shows it: the secret is write-only.
type apiHook struct {
	Enabled     bool   `json:"enabled"`
	URL         string `json:"url"`
	CABundle    string `json:"ca_bundle"`
	MaxInFlight int    `json:"max_in_flight"`
	SecretSet   bool   `json:"secret_set"`
	// Secret is a generated secret, in the answer to the PUT that
	// generated it only.
	Secret string `json:"secret,omitempty"`
}

func toAPIHook(cfg hook.Config) apiHook {
	mif := cfg.MaxInFlight
	if mif == 0 {
		mif = hook.DefaultMaxInFlight
	}
	return apiHook{Enabled: cfg.Enabled, URL: cfg.URL, CABundle: cfg.CABundle, MaxInFlight: mif, SecretSet: cfg.Secret != ""}
}

func (s *Server) apiGetHook(w http.ResponseWriter, r *http.Request, _ store.User) error {
	return writeJSON(w, http.StatusOK, toAPIHook(s.Hook.Config()))
}

// apiSetHook changes the fields given; the others keep their values.
// "secret" sets the shared secret, "generate_secret" makes one (returned
// once as "secret"), "clear_secret" removes it.
func (s *Server) apiSetHook(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in struct {
		Enabled        *bool   `json:"enabled"`
		URL            *string `json:"url"`
		CABundle       *string `json:"ca_bundle"`
		MaxInFlight    *int    `json:"max_in_flight"`
		Secret         string  `json:"secret"`
		GenerateSecret bool    `json:"generate_secret"`
		ClearSecret    bool    `json:"clear_secret"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	hi := hookInput{Enabled: in.Enabled, URL: in.URL, CABundle: in.CABundle, Secret: in.Secret,
		GenerateSecret: in.GenerateSecret, ClearSecret: in.ClearSecret}
	if in.MaxInFlight != nil {
		hi.MaxInFlight = ptr(strconv.Itoa(*in.MaxInFlight))
	}
	cfg, secret, err := s.saveHook(r, actor, hi)
	if err != nil {
		return err
	}
	out := toAPIHook(cfg)
	out.Secret = secret
	return writeJSON(w, http.StatusOK, out)
}

// apiHookTest is one test exchange with the hook.
type apiHookTest struct {
	Allowed   bool     `json:"allowed"`
	Reason    string   `json:"reason"`
	Message   string   `json:"message"`
	Posture   []string `json:"posture"`
	Error     string   `json:"error,omitempty"`
	ElapsedMS float64  `json:"elapsed_ms"`
	Request   string   `json:"request"`
	Response  string   `json:"response"`
}

func (s *Server) apiTestHook(w http.ResponseWriter, r *http.Request, actor store.User) error {
	x := s.testHook(r, actor)
	out := apiHookTest{Allowed: x.Result.Allowed, Reason: string(x.Result.Reason), Message: x.Result.Message, Posture: x.Result.Posture,
		ElapsedMS: float64(x.Elapsed.Microseconds()) / 1000, Request: x.Request, Response: x.Response}
	if out.Posture == nil {
		out.Posture = []string{}
	}
	if x.Result.Err != nil {
		out.Error = x.Result.Err.Error()
	}
	return writeJSON(w, http.StatusOK, out)
}

// apiProxies is the trusted proxies, and the address the portal sees for
// the caller with them.
type apiProxies struct {
	Networks    []string `json:"networks"`
	YourAddress string   `json:"your_address"`
}

func (s *Server) proxiesJSON(r *http.Request) apiProxies {
	out := apiProxies{Networks: []string{}, YourAddress: s.ClientInfo.Addr(r)}
	for _, p := range s.ClientInfo.Trusted() {
		out.Networks = append(out.Networks, p.String())
	}
	return out
}

func (s *Server) apiGetProxies(w http.ResponseWriter, r *http.Request, _ store.User) error {
	return writeJSON(w, http.StatusOK, s.proxiesJSON(r))
}

func (s *Server) apiSetProxies(w http.ResponseWriter, r *http.Request, actor store.User) error {
	var in struct {
		Networks *[]string `json:"networks"`
	}
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Networks == nil {
		return fieldErrors{"networks": "Give the list of networks; [] trusts no proxy."}
	}
	if len(*in.Networks) > clientinfo.MaxTrusted {
		return fieldErrors{"networks": "Give at most 100 networks."}
	}
	for _, n := range *in.Networks {
		// One network per entry: a separator inside would make several.
		if n == "" || strings.ContainsAny(n, " ,\t\r\n") {
			if len(n) > 60 {
				n = strings.ToValidUTF8(n[:60], "") + "…"
			}
			return fieldErrors{"networks": fmt.Sprintf("%q is not one network: give one CIDR or address per entry.", n)}
		}
	}
	if _, err := s.saveProxies(r, actor, strings.Join(*in.Networks, "\n")); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.proxiesJSON(r))
}
