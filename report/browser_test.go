package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/neurosurg/neurosurg/report"
	"github.com/neurosurg/neurosurg/surgery"
)

// chromium finds the browser: NEUROSURG_CHROMIUM, else Debian's chromium (scripts/setup.sh
// installs it). Without one the test skips, except in CI, where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NEUROSURG_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: scripts/setup.sh installs Debian's chromium package")
	}
	t.Skip("chromium is not installed (scripts/setup.sh installs it); CI runs this test")
	return ""
}

// readmeSurgery runs the README's first command, `neurosurg surgery examples/stories-swap.yaml`,
// on a copy of the examples, and returns the report page it wrote.
func readmeSurgery(t *testing.T) string {
	t.Helper()
	return readmeSurgeryResult(t).Files["report_html"]
}

// The README surgery runs once for all tests here, in a directory TestMain removes.
var (
	surgeryOnce sync.Once
	surgeryRes  *surgery.Result
	surgeryErr  error
	surgeryDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if surgeryDir != "" {
		os.RemoveAll(surgeryDir)
	}
	os.Exit(code)
}

func readmeSurgeryResult(t *testing.T) *surgery.Result {
	t.Helper()
	surgeryOnce.Do(func() { surgeryRes, surgeryErr = runReadmeSurgery() })
	if surgeryErr != nil {
		t.Fatal(surgeryErr)
	}
	if p := surgeryRes.Files["report_html"]; p == "" || !surgeryRes.Written {
		t.Fatalf("surgery wrote no report.html or no checkpoint: %+v", surgeryRes)
	}
	return surgeryRes
}

func runReadmeSurgery() (*surgery.Result, error) {
	dir, err := os.MkdirTemp("", "neurosurg-report-")
	if err != nil {
		return nil, err
	}
	surgeryDir = dir
	ex := filepath.Join(dir, "examples")
	if err := os.Mkdir(ex, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"stories-swap.yaml", "stories-generated.jsonl", "stories-swap-bench.jsonl"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(ex, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	td, _ := filepath.Abs(filepath.Join("..", "testdata"))
	if err := os.Symlink(td, filepath.Join(dir, "testdata")); err != nil {
		return nil, err
	}
	return surgery.Run(context.Background(), filepath.Join(ex, "stories-swap.yaml"), surgery.Options{})
}

// checkScript is put into a copy of the page: it records console errors, CSP violations and
// fetched resources from the start, and on load measures every chart from the DOM — marks,
// texts and legend inside their <svg>, no text or legend over a mark, no text over another —
// and writes its verdict into the page for --dump-dom to return.
const checkScript = `<script>
(() => {
  const errors = [], violations = [];
  addEventListener('error', e => errors.push(String(e.message || e.type)), true);
  addEventListener('securitypolicyviolation', e => violations.push(e.violatedDirective + ' ' + e.blockedURI));
  const ce = console.error.bind(console);
  console.error = (...a) => { errors.push(a.join(' ')); ce(...a); };
  addEventListener('load', () => {
    const tol = 0.5, problems = [];
    const box = el => { const r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
    const inside = (a, b) => a.x >= b.x - tol && a.y >= b.y - tol && a.x + a.w <= b.x + b.w + tol && a.y + a.h <= b.y + b.h + tol;
    const overlap = (a, b) => Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x) > tol && Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y) > tol;
    const name = el => (el.tagName + ' ' + (el.textContent || '').trim()).slice(0, 60);
    let marks = 0, texts = 0;
    const charts = [...document.querySelectorAll('svg.chart')];
    charts.forEach((svg, i) => {
      const sb = box(svg);
      const title = svg.getAttribute('aria-label') || ('chart ' + i);
      const ms = [...svg.querySelectorAll('rect.mark')].map(el => ({el, b: box(el)}));
      const ts = [...svg.querySelectorAll('text')].map(el => ({el, b: box(el)}));
      const lg = [...svg.querySelectorAll('g.legend')].map(el => ({el, b: box(el)}));
      marks += ms.length; texts += ts.length;
      if (sb.w <= 0 || sb.h <= 0) problems.push(title + ': empty box');
      for (const m of [...ms, ...ts, ...lg]) if (!inside(m.b, sb)) problems.push(title + ': ' + name(m.el) + ' outside the chart ' + JSON.stringify(m.b) + ' vs ' + JSON.stringify(sb));
      for (const m of ms) {
        for (const t of [...ts, ...lg]) if (overlap(t.b, m.b)) problems.push(title + ': ' + name(t.el) + ' over a mark ' + JSON.stringify(m.b));
      }
      for (let a = 0; a < ts.length; a++) for (let b = a + 1; b < ts.length; b++)
        if (overlap(ts[a].b, ts[b].b)) problems.push(title + ': ' + name(ts[a].el) + ' over ' + name(ts[b].el));
    });
    const doc = document.documentElement;
    if (doc.scrollWidth > innerWidth + 1) problems.push('the page scrolls sideways: ' + doc.scrollWidth + ' > ' + innerWidth);
    const out = document.createElement('pre');
    out.id = 'layout-verdict';
    out.style.display = 'none';
    out.textContent = JSON.stringify({
      charts: charts.length, marks, texts, problems: problems.slice(0, 50), errors, violations,
      resources: performance.getEntriesByType('resource').map(r => r.name),
      height: doc.scrollHeight, dark: matchMedia('(prefers-color-scheme: dark)').matches,
      background: getComputedStyle(doc).backgroundColor,
    });
    document.body.appendChild(out);
  });
})();
</script>`

type verdict struct {
	Charts, Marks, Texts int
	Problems, Errors     []string
	Violations           []string
	Resources            []string
	Height               int
	Dark                 bool
	Background           string
}

const csp = `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`

// instrument returns the page with checkScript right after its CSP, which is widened only by
// inline scripts so that the check can run.
func instrument(t *testing.T, page []byte) []byte {
	t.Helper()
	if !bytes.Contains(page, []byte(csp)) {
		t.Fatalf("the page lacks its Content-Security-Policy %s", csp)
	}
	relaxed := strings.Replace(csp, "default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
	return bytes.Replace(page, []byte(csp), []byte(relaxed+"\n"+checkScript), 1)
}

var verdictRE = regexp.MustCompile(`(?s)<pre id="layout-verdict"[^>]*>(.*?)</pre>`)

// browse loads page in headless chromium and returns its verdict and the browser's console
// lines; screenshot, when set, is written at the page's full height.
func browse(t *testing.T, bin, page string, dark bool, screenshot string, height int) (verdict, []string) {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
		"--disable-background-networking", "--disable-dev-shm-usage", "--disable-component-update", "--disable-sync", "--no-default-browser-check",
		"--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + filepath.Join(t.TempDir(), "profile"),
		fmt.Sprintf("--window-size=1280,%d", max(height, 900)), "--dump-dom"}
	if dark {
		args = append(args, "--force-dark-mode", "--blink-settings=preferredColorScheme=0")
	}
	if screenshot != "" {
		args = append(args, "--screenshot="+screenshot)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "file://"+page)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	m := verdictRE.FindSubmatch(stdout.Bytes())
	if m == nil {
		t.Fatalf("no layout verdict in the dumped DOM (the check script did not run)\nstderr:\n%s", stderr.String())
	}
	var v verdict
	if err := json.Unmarshal([]byte(html.UnescapeString(string(m[1]))), &v); err != nil {
		t.Fatalf("verdict %s: %v", m[1], err)
	}
	var console []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, ":CONSOLE") {
			console = append(console, l)
		}
	}
	return v, console
}

// TestReportInBrowser renders the README's surgery report in headless Chromium, light and dark:
// it loads with no console error and no request, every chart's marks, texts and legend are
// inside it and no text or legend is drawn over a mark. The screenshots stay in build/ for a
// person to look at.
func TestReportInBrowser(t *testing.T) {
	bin := chromium(t)
	start := time.Now()
	reportPath := readmeSurgery(t)
	page, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	surgeryTime := time.Since(start)
	checked := filepath.Join(t.TempDir(), "checked.html")
	if err := os.WriteFile(checked, instrument(t, page), 0o644); err != nil {
		t.Fatal(err)
	}
	build, _ := filepath.Abs(filepath.Join("..", "build"))
	if err := os.MkdirAll(build, 0o755); err != nil {
		t.Fatal(err)
	}
	first, console := browse(t, bin, checked, false, "", 0)
	height := min(first.Height+20, 16000)
	for _, run := range []struct {
		name string
		dark bool
		shot string
	}{
		{"light", false, filepath.Join(build, "report-screenshot.png")},
		{"dark", true, filepath.Join(build, "report-screenshot-dark.png")},
	} {
		os.Remove(run.shot)
		v, cons := browse(t, bin, checked, run.dark, run.shot, height)
		console = append(console, cons...)
		if v.Charts < 6 || v.Marks < 100 || v.Texts < 50 {
			t.Errorf("%s: %d charts, %d marks, %d texts: the page is missing charts", run.name, v.Charts, v.Marks, v.Texts)
		}
		for _, p := range v.Problems {
			t.Errorf("%s: %s", run.name, p)
		}
		if len(v.Errors)+len(v.Violations)+len(v.Resources) > 0 {
			t.Errorf("%s: errors %q, CSP violations %q, requests %q", run.name, v.Errors, v.Violations, v.Resources)
		}
		if v.Dark != run.dark {
			t.Errorf("%s: prefers-color-scheme dark = %v", run.name, v.Dark)
		}
		if st, err := os.Stat(run.shot); err != nil || st.Size() < 10000 {
			t.Errorf("%s: screenshot %s: %v", run.name, run.shot, err)
		}
		t.Logf("%s: %d charts, %d marks, %d texts, page %d px high, background %s; screenshot %s", run.name, v.Charts, v.Marks, v.Texts, v.Height, v.Background, run.shot)
	}
	for _, l := range console {
		t.Errorf("console: %s", l)
	}
	t.Logf("surgery %v, browser %v", surgeryTime.Round(time.Millisecond), (time.Since(start) - surgeryTime).Round(time.Millisecond))
}

// TestReportLoadsNothing reads the page itself: no script, and nothing it could fetch. The
// checkpoint carries the same page, and its model card links it.
func TestReportLoadsNothing(t *testing.T) {
	res := readmeSurgeryResult(t)
	page, err := os.ReadFile(res.Files["report_html"])
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(res.Out, report.CardFile))
	if err != nil || !bytes.Equal(shipped, page) {
		t.Errorf("the checkpoint's %s is not the surgery's report.html (%v)", report.CardFile, err)
	}
	card, _ := os.ReadFile(filepath.Join(res.Out, "README.md"))
	for _, want := range []string{"## Verify", "## Surgery report", "](" + report.CardFile + ")", "Gates: **PASS**", "| llm | Lily | L0: 15, L1: 20, L2: 25, L3: 24, L4: 36 |"} {
		if !strings.Contains(string(card), want) {
			t.Errorf("the model card lacks %q:\n%s", want, card)
		}
	}
	s := string(page)
	if !strings.Contains(s, csp) {
		t.Error("no Content-Security-Policy forbidding fetches")
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script`),
		regexp.MustCompile(`(?i)\s(src|href|xlink:href|action|srcset)\s*=\s*"[^"#]`),
		regexp.MustCompile(`(?i)url\(`),
		regexp.MustCompile(`(?i)@import`),
		regexp.MustCompile(`(?i)https?://[^"\s]*`),
	} {
		for _, m := range bad.FindAllString(s, -1) {
			if m == "http://www.w3.org/2000/svg" { // the SVG namespace: a name, never fetched
				continue
			}
			t.Errorf("the page may load something: %q", m)
		}
	}
	for _, want := range []string{`id="verdict"`, "PASS", `id="verify"`, `id="generations"`, `id="map"`, `id="layers"`, `id="top"`, `class="w-src"`, `<ins`} {
		if !strings.Contains(s, want) {
			t.Errorf("the README surgery's page lacks %s", want)
		}
	}
}

// TestBrowserCheckCatchesFaults shows the in-page check failing where it should: a label on a
// bar, a label past the chart's edge, two labels on each other, an image fetched from outside.
func TestBrowserCheckCatchesFaults(t *testing.T) {
	bin := chromium(t)
	bad := `<!DOCTYPE html><html><head>` + csp + `</head><body>
<svg class="chart" viewBox="0 0 200 100" width="200" height="100" aria-label="bad">
<rect class="mark" x="10" y="10" width="100" height="20"/>
<text x="20" y="25">on the bar</text>
<text x="150" y="60">past the edge of the chart</text>
<text x="10" y="80">one</text><text x="12" y="82">two</text>
</svg>
<img src="https://example.invalid/x.png">
</body></html>`
	p := filepath.Join(t.TempDir(), "bad.html")
	if err := os.WriteFile(p, instrument(t, []byte(bad)), 0o644); err != nil {
		t.Fatal(err)
	}
	v, _ := browse(t, bin, p, false, "", 0)
	all := strings.Join(v.Problems, "\n")
	for _, want := range []string{"on the bar over a mark", "past the edge of the chart outside the chart", "text one over text two"} {
		if !strings.Contains(all, want) {
			t.Errorf("the check missed %q; it found:\n%s", want, all)
		}
	}
	if len(v.Violations) == 0 {
		t.Errorf("the outside image went unnoticed: %+v", v)
	}
}
