// Package web holds the browser client: plain HTML, CSS and JavaScript with
// no build step, embedded in the chatd binary.
package web

import (
	"embed"
	"io/fs"
)

//go:embed index.html *.js style.css
var files embed.FS

// Files returns the page's files, rooted at the site's root.
func Files() fs.FS { return files }
