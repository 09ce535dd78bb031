"""One HTTPS GET with Python's `ssl`, optionally with a client certificate; prints JSON
{"status", "body"} or {"error"} (a refused handshake surfaces here).

    python3 tls_client.py URL CA_PEM [CERT_PEM KEY_PEM]
"""

import http.client
import json
import ssl
import sys
from urllib.parse import urlparse

url, ca = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
u = urlparse(url)
try:
    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
    conn.request("GET", u.path or "/")
    r = conn.getresponse()
    print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except (ssl.SSLError, ConnectionError, OSError) as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
