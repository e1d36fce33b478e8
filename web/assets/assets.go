// Package assets serves the front-end bundle that esbuild writes to dist.
package assets

import (
	"embed"
	"io/fs"
	"net/http"
)

// dist holds the built bundle; .gitkeep keeps the directory (and so this
// embed) valid before the first build.
//
//go:embed all:dist
var dist embed.FS

// FS is the bundle's file system.
func FS() fs.FS {
	sub, _ := fs.Sub(dist, "dist")
	return sub
}

// Handler serves the bundle. Files are revalidated on every use (no-cache
// with the modification time the embed gives) so a new build is never
// masked by a stale copy.
func Handler() http.Handler {
	files := http.FileServerFS(FS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path == ".gitkeep" || r.URL.Path[len(r.URL.Path)-1] == '/' {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
