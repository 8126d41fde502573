package main

import (
	"net"
	"net/http"
)

// httpClient dials WebSocket connections with d (and its source address).
// Each client gets its own transport so connections are not pooled.
func httpClient(d *net.Dialer) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: false}}
}
