package main

import (
	"bytes"
	"html/template"
	"image/png"
	"log/slog"
	"net/http"

	"github.com/checkpointd/checkpoint/internal/clock"
	"github.com/checkpointd/checkpoint/internal/qrcode"
)

// Refresh is how often the phone renews its presentation, in seconds. The
// checkpoint's replay rules count on it (docs/credential.md).
const Refresh = 5

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>健康码 Health code</title>
<noscript><meta http-equiv="refresh" content="{{.Refresh}}"></noscript>
<style>
body { font-family: sans-serif; text-align: center; margin: 0; padding: 1em; background: #f4f4f4; }
img { width: min(90vw, 420px); image-rendering: pixelated; background: #fff; }
p { color: #555; }
</style>
</head>
<body>
<h1>健康码 Health code</h1>
<img id="code" src="/code.png" alt="QR code">
<p>{{if .Static}}纸质码 Paper code{{else}}每 {{.Refresh}} 秒更新 · renewed every {{.Refresh}} s · <span id="left">{{.Refresh}}</span>{{end}}</p>
{{if not .Static}}<script>
let left = {{.Refresh}};
setInterval(() => {
  left -= 1;
  if (left <= 0) {
    document.getElementById("code").src = "/code.png?t=" + Date.now();
    left = {{.Refresh}};
  }
  document.getElementById("left").textContent = left;
}, 1000);
</script>{{end}}
</body>
</html>
`))

// newPage serves the holder's page: / is the page, /code.png a fresh code
// as an image and /code.txt its text.
func newPage(w *wallet, clk clock.Clock, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTemplate.Execute(rw, struct {
			Refresh int
			Static  bool
		}{Refresh, w.static}); err != nil {
			log.Error("page", "err", err)
		}
	})
	mux.HandleFunc("GET /code.png", func(rw http.ResponseWriter, r *http.Request) {
		text, err := w.text(clk.Now())
		if err != nil {
			log.Error("present", "err", err)
			http.Error(rw, "cannot present the credential", http.StatusInternalServerError)
			return
		}
		img, err := qrcode.Image(text, 8)
		if err != nil {
			log.Error("render", "err", err)
			http.Error(rw, "cannot render the code", http.StatusInternalServerError)
			return
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			log.Error("encode png", "err", err)
			http.Error(rw, "cannot render the code", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Header().Set("Cache-Control", "no-store")
		rw.Write(buf.Bytes())
	})
	mux.HandleFunc("GET /code.txt", func(rw http.ResponseWriter, r *http.Request) {
		text, err := w.text(clk.Now())
		if err != nil {
			log.Error("present", "err", err)
			http.Error(rw, "cannot present the credential", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		rw.Write([]byte(text + "\n"))
	})
	return mux
}
