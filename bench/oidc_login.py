#!/usr/bin/env python3
"""Signs in to the benchmark's node-oidc-provider (tests/oidc/server.mjs) as
a browser would, with PKCE and prompt=consent for offline_access, and
prints the refresh token of the new grant: one per tool compared, so that
neither replays the other's rotating token.

usage: oidc_login.py ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI CA_FILE
"""
import base64
import hashlib
import html
import http.cookiejar
import json
import re
import secrets
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

issuer, client_id, client_secret, redirect, ca = sys.argv[1:6]
tls = ssl.create_default_context(cafile=ca)


class Stop(urllib.request.HTTPRedirectHandler):
    """Follows the provider's redirects, but not the last one: the code is
    in it, and nothing listens at the redirect URI."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if newurl.startswith(redirect):
            raise Landed(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Landed(Exception):
    pass


opener = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    urllib.request.HTTPSHandler(context=tls),
    Stop,
)
verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
query = urllib.parse.urlencode({
    "response_type": "code", "client_id": client_id, "redirect_uri": redirect,
    "scope": "openid offline_access", "prompt": "consent",
    "code_challenge": challenge, "code_challenge_method": "S256", "state": secrets.token_urlsafe(8),
})
url, data, landed = f"{issuer}/auth?{query}", None, None
try:
    for _ in range(8):
        with opener.open(url, data=data, timeout=15) as response:
            url, page = response.geturl(), response.read().decode("utf-8", "replace")
        form = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"[^>]*>(.*?)</form>', page, re.S)
        if not form:
            sys.exit("oidc_login.py: no form and no redirect")
        fields = {
            html.unescape(n): html.unescape(v)
            for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(2))
        }
        if 'name="login"' in form.group(2):
            fields.update(login="bench", password="anything")
        url = urllib.parse.urljoin(url, html.unescape(form.group(1)))
        data = urllib.parse.urlencode(fields).encode()
except Landed as e:
    landed = str(e)
if not landed:
    sys.exit("oidc_login.py: never redirected back")
code = urllib.parse.parse_qs(urllib.parse.urlparse(landed).query)["code"][0]
form = urllib.parse.urlencode({
    "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
    "code_verifier": verifier, "client_id": client_id, "client_secret": client_secret,
}).encode()
with urllib.request.urlopen(f"{issuer}/token", data=form, context=tls, timeout=15) as response:
    print(json.load(response)["refresh_token"])
