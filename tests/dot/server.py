#!/usr/bin/env python3
"""django-oauth-toolkit on loopback, for the end-to-end tests: a second
independent OAuth 2.0 / OpenID provider, from the Python ecosystem (the
first, node-oidc-provider, is JavaScript). Configured as strict servers are:
refresh tokens rotate, and a replayed one revokes its whole family (RFC
9700's reuse detection); PKCE is required; OpenID id_tokens carry the
login's nonce. Any client may authenticate in the form body or with HTTP
Basic, which this server form-decodes as RFC 6749 §2.3.1 says; the client
secret holds `+ / : %` and a space to prove it.

Prints one line, `issuer=URL`, once listening on 127.0.0.1 (a free port).
Environment: REDIRECT_URI, the loopback redirect of the login clients;
ACCESS_TTL, access token lifetime in seconds (default 3600);
TOKEN_DELAY_MS, hold every refresh_token grant that long before serving it
(a slow server). GET /test/log lists the token requests seen (grant type,
how the client authenticated, status), for the tests to count.

Clients: `login-client` (confidential, authorization code), `public-client`
(public, authorization code with PKCE only), `cc-client` (confidential,
client credentials); both secrets are SECRET below. The user is `alice`:
the sign-in form takes any password."""
import json
import os
import sys
import tempfile
import threading
import time

SECRET = "a+b/c:d% e"

REDIRECT = os.environ.get("REDIRECT_URI", "http://127.0.0.1:3000/login")
TTL = int(os.environ.get("ACCESS_TTL", "3600"))
TOKEN_DELAY = int(os.environ.get("TOKEN_DELAY_MS", "0")) / 1000


def rsa_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def configure(db):
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.urandom(32).hex(),
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oauth2_provider",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            __name__ + ".TokenLog",
        ],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        LOGIN_URL="/login/",
        # Client secrets are hashed like passwords: the fastest hasher keeps
        # each token request quick (never for real use).
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        OAUTH2_PROVIDER={
            "ACCESS_TOKEN_EXPIRE_SECONDS": TTL,
            "ROTATE_REFRESH_TOKEN": True,
            "REFRESH_TOKEN_REUSE_PROTECTION": True,
            "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
            "PKCE_REQUIRED": True,
            "OIDC_ENABLED": True,
            "OIDC_RSA_PRIVATE_KEY": rsa_key(),
            "SCOPES": {"openid": "OpenID", "offline_access": "Refresh tokens", "api": "The API"},
            "DEFAULT_SCOPES": ["api"],
        },
        LOGGING={"version": 1, "disable_existing_loggers": True},
    )


# The token requests seen, for GET /test/log.
LOG = []
LOG_LOCK = threading.Lock()


class TokenLog:
    """Records each request to the token endpoint and holds refresh grants
    for TOKEN_DELAY_MS."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != "/o/token/" or request.method != "POST":
            return self.get_response(request)
        grant = request.POST.get("grant_type", "")
        if grant == "refresh_token" and TOKEN_DELAY:
            time.sleep(TOKEN_DELAY)
        response = self.get_response(request)
        auth = "basic" if request.META.get("HTTP_AUTHORIZATION", "").startswith("Basic ") else "post"
        with LOG_LOCK:
            LOG.append({"grant_type": grant, "auth": auth, "status": response.status_code})
        return response


def login(request):
    """The sign-in form: any password signs `alice` in."""
    from django.contrib.auth import login as sign_in
    from django.contrib.auth.models import User
    from django.http import HttpResponse, HttpResponseRedirect
    from django.utils.html import escape

    target = request.POST.get("next") or request.GET.get("next") or "/"
    if request.method == "POST" and request.POST.get("password"):
        sign_in(request, User.objects.get(username="alice"))
        return HttpResponseRedirect(target)
    return HttpResponse(
        f'<form action="/login/" method="post"><input type="hidden" name="next" value="{escape(target)}">'
        '<input name="login"><input name="password" type="password"></form>'
    )


def log(request):
    from django.http import HttpResponse

    with LOG_LOCK:
        return HttpResponse(json.dumps(LOG), content_type="application/json")


def setup():
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    User.objects.create_user("alice")
    login_app = {
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "redirect_uris": REDIRECT,
        "skip_authorization": True,
        "algorithm": Application.RS256_ALGORITHM,
    }
    Application.objects.create(
        client_id="login-client", client_secret=SECRET, client_type=Application.CLIENT_CONFIDENTIAL, **login_app
    )
    Application.objects.create(
        client_id="public-client", client_secret="", client_type=Application.CLIENT_PUBLIC, **login_app
    )
    Application.objects.create(
        client_id="cc-client",
        client_secret=SECRET,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
    )


def main():
    with tempfile.TemporaryDirectory(prefix="a365-dot-") as tmp:
        configure(os.path.join(tmp, "db.sqlite3"))
        import django

        django.setup()
        from django.urls import include, path

        global urlpatterns
        urlpatterns = [
            path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
            path("login/", login),
            path("test/log", log),
        ]
        setup()
        from django.core.handlers.wsgi import WSGIHandler
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
        server.set_app(WSGIHandler())
        print(f"issuer=http://127.0.0.1:{server.server_address[1]}/o", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
