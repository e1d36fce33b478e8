package httpui

import "net/http"

// The devices branch declares these two as well (devices.go): at merge,
// delete this file.

const headerTarget = "Keyway-Target"

// writeClientError writes the {"error", "message"} answer of the client API.
func writeClientError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "message": message})
}
