"""libs.callbacks: which callback URLs are acceptable, and the webhook signature scheme."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from libs.callbacks import MAX_CALLBACK_URL_LENGTH, callback_url_problem, sign, signature_matches

ACCEPTED_EVERYWHERE = [
    "https://hooks.example.com/done",
    "https://hooks.example.com:8443/a/b?token=abc&x=1",
    "HTTPS://Hooks.Example.com/",
    "https://203.0.113.7/hook",
    "https://[2001:db8::1]/hook",
]

LOCAL_HTTP = [
    "http://localhost/hook",
    "http://localhost:8000/hook",
    "http://127.0.0.1:9000/hook?x=1",
    "http://[::1]:9000/hook",
    "http://LOCALHOST/hook",
]


class TestCallbackUrlProblem:
    @pytest.mark.parametrize("allow_local_http", [False, True])
    @pytest.mark.parametrize("url", ACCEPTED_EVERYWHERE)
    def test_https_with_a_host_is_accepted(self, url: str, allow_local_http: bool) -> None:
        """An https URL with a host (name or IP, any port, path and query) is acceptable in every mode."""
        assert callback_url_problem(url, allow_local_http=allow_local_http) is None

    @pytest.mark.parametrize("url", LOCAL_HTTP)
    def test_http_to_localhost_only_when_allowed(self, url: str) -> None:
        """Plain http to localhost, 127.0.0.1 or ::1 is accepted only with allow_local_http."""
        assert callback_url_problem(url, allow_local_http=True) is None
        assert callback_url_problem(url, allow_local_http=False) == "the callback URL must use https"

    @pytest.mark.parametrize(
        "url",
        [
            "http://hooks.example.com/done",
            "http://10.0.0.5/hook",
            "http://127.0.0.2/hook",
            "http://localhost.example.com/hook",
            "http://[::2]/hook",
        ],
    )
    def test_http_to_any_other_host_is_refused_even_when_local_http_is_allowed(self, url: str) -> None:
        """allow_local_http opens http to the three local names only, not to look-alikes or other addresses."""
        problem = callback_url_problem(url, allow_local_http=True)
        assert problem is not None and "must use https" in problem

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("", "empty"),
            ("ftp://hooks.example.com/done", "must use https"),
            ("javascript:alert(1)", "must use https"),
            ("hooks.example.com/done", "must use https"),
            ("https:///done", "no host"),
            ("https://user:pass@hooks.example.com/done", "user info"),
            ("https://token@hooks.example.com/done", "user info"),
            ("https://hooks.example.com:99999/done", "not a valid URL"),
            ("https://hooks.example.com:port/done", "not a valid URL"),
            ("https://[::1/done", "not a valid URL"),
            ("https://hooks.example.com/a b", "whitespace or control"),
            ("https://hooks.example.com/\tdone", "whitespace or control"),
            ("https://hooks.example.com/done\n", "whitespace or control"),
            ("https://hooks.example.com/\x00", "whitespace or control"),
            ("https://hooks.example.com/\u00a0", "whitespace or control"),
        ],
    )
    def test_malformed_urls_are_refused_with_the_reason(self, url: str, problem: str) -> None:
        """Each refusal says why, in both modes."""
        for allow_local_http in (False, True):
            found = callback_url_problem(url, allow_local_http=allow_local_http)
            assert found is not None and problem in found

    def test_length_is_bounded(self) -> None:
        """A URL of MAX_CALLBACK_URL_LENGTH characters is accepted, one more is refused."""
        base = "https://hooks.example.com/"
        longest = base + "a" * (MAX_CALLBACK_URL_LENGTH - len(base))
        assert callback_url_problem(longest, allow_local_http=False) is None
        problem = callback_url_problem(longest + "a", allow_local_http=False)
        assert problem is not None and "longer than" in problem

    def test_the_problem_never_repeats_the_url(self) -> None:
        """A refusal may end up in logs and dead-letter reasons: it must not carry the URL's token."""
        for url in ("http://hooks.example.com/?token=s3cr3t", "https://me:s3cr3t@hooks.example.com/"):
            problem = callback_url_problem(url, allow_local_http=False)
            assert problem is not None and "s3cr3t" not in problem


class TestSignature:
    def test_sign_is_the_hex_hmac_sha256_of_the_body(self) -> None:
        """sign() is "sha256=" and the hex HMAC-SHA256 of the exact bytes, as a receiver computes it."""
        secret, body = b"k" * 32, b'{"eventId":"e"}'
        assert sign(secret, body) == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()

    def test_signature_matches_only_the_same_body_and_key(self) -> None:
        """Another key, another body, or a garbled header does not match."""
        secret, body = b"k" * 32, b'{"eventId":"e"}'
        signature = sign(secret, body)
        assert signature_matches(secret, body, signature)
        assert not signature_matches(b"j" * 32, body, signature)
        assert not signature_matches(secret, body + b" ", signature)
        assert not signature_matches(secret, body, signature.removeprefix("sha256="))
        assert not signature_matches(secret, body, "sha256=ü")
