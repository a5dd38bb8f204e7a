"""Tiny programs the test pods run (with the project's Python, as the test node resolves it)."""

# Serves on :8080. GET /ready answers 200 only while "ready"; POST /toggle flips it; any other
# GET answers with the pod's hostname.
TOGGLE_SERVER = """
import http.server, socket
ready = False
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = ready or self.path != "/ready"
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(socket.gethostname().encode())
    def do_POST(self):
        global ready
        ready = not ready
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

# GETs $TARGET_URL until it answers (at most 20 s) and prints the answer.
FETCH = """
import os, time, urllib.request
deadline = time.time() + 20
while True:
    try:
        answer = urllib.request.urlopen(os.environ["TARGET_URL"], timeout=2).read().decode()
        print("answer:", answer, flush=True)
        break
    except OSError as exc:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
"""

# Lists ConfigMaps and Secrets of its own namespace with the unmodified in-cluster client.
IN_CLUSTER_CLIENT = """
import asyncio
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

async def main():
    config.load_incluster_config()
    namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
    async with client.ApiClient() as api:
        core = client.CoreV1Api(api)
        maps = await core.list_namespaced_config_map(namespace)
        print("configmaps:", ",".join(sorted(m.metadata.name for m in maps.items)))
        try:
            await core.list_namespaced_secret(namespace)
            print("secrets: allowed")
        except ApiException as exc:
            print("secrets: denied", exc.status)

asyncio.run(main())
"""


def python(name: str, program: str, **fields: object) -> dict:
    return {"name": name, "image": "python", "command": ["python", "-c", program], **fields}


# A member that is ready (/readyz, /healthz answer 200) but fails every call with 503; a POST
# to /toggle flips its readiness.
FAILING_MEMBER = """
import http.server
ready = True
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # Ready to the kubelet's probe (unless toggled); failing every other call.
        ok = self.path == "/healthz" or (self.path == "/readyz" and ready)
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"broken")
    def do_POST(self):
        global ready
        if self.path == "/toggle":
            ready = not ready
            self.send_response(200)
        else:
            self.send_response(503)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""
