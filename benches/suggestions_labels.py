"""Latency of POST suggestions on the scored sample with N stored labels (default 100,000),
against one daemon binary: 10 requests one after another, the first and the p50 of the rest.
usage: python3 benches/suggestions_labels.py target/debug/nexttile [N]"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request
binary = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data = tempfile.mkdtemp(prefix="nt-bench-")
env = dict(os.environ); env.pop("NEXTTILE_TOKEN", None)
p = subprocess.Popen([binary, "serve", "--bind", "127.0.0.1:0", "--root", root + "/samples", "--data-dir", data],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=root)
base = p.stdout.readline().decode().strip().removeprefix("listening on ")
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")
try:
    call("POST", "/projects", {"name": "bench"})
    job = call("POST", "/projects/1/scenes", {"path": "chincoteague_s2.tif"})["job"]
    while call("GET", f"/jobs/{job}")["status"] in ("queued", "running"):
        time.sleep(0.5)
    stored = 0
    while stored < n:
        k = min(5000, n - stored)
        feats = [{"type": "Feature", "properties": {"class": "Forest"}, "geometry": {"type": "Point",
                  "coordinates": [-75.73 + (i % 1000) * 1e-4, 37.67 + (i // 1000) * 1e-4]}} for i in range(stored, stored + k)]
        stored += len(call("POST", "/projects/1/labels", {"type": "FeatureCollection", "features": feats})["ids"])
    times = []
    for _ in range(10):
        t = time.perf_counter(); call("POST", "/projects/1/suggestions", {"strategy": "auto", "budget": 20}); times.append(time.perf_counter() - t)
    print(json.dumps({"binary": binary, "labels": stored, "first_ms": round(times[0] * 1e3, 1),
                      "p50_rest_ms": round(statistics.median(times[1:]) * 1e3, 1), "max_rest_ms": round(max(times[1:]) * 1e3, 1)}))
finally:
    p.terminate(); p.wait()
    shutil.rmtree(data, ignore_errors=True)
