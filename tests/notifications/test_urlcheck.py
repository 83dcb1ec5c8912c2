"""The SSRF guard: only public unicast addresses, unless the setting allows others."""

from __future__ import annotations

import pytest

from notifications.urlcheck import UrlRefused, url_check


@pytest.fixture(autouse=True)
def strict(settings):
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = False


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://localhost:8000/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://240.0.0.1/hook", "reserved"),
    ],
)
def test_internal_addresses_are_refused(url, kind):
    with pytest.raises(UrlRefused, match=f"resolves to a {kind} address"):
        url_check(url)


def test_a_public_address_is_pinned_with_the_name_kept_for_host_and_tls():
    target = url_check("https://public.example/tekton?x=1")
    assert target.address == "93.184.216.34"
    assert target.url == "https://93.184.216.34/tekton?x=1"
    assert (target.hostname, target.host_header) == ("public.example", "public.example")
    assert url_check("http://public.example:8080/").host_header == "public.example:8080"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://public.example/x", "https:// or http://"),
        ("https://user:pw@public.example/x", "must not carry a user or password"),
        ("https:///nohost", "no host"),
        ("https://nowhere.invalid/x", "does not resolve"),
        ("http://public.example:99999/", "not a valid URL"),
    ],
)
def test_bad_urls_get_one_clear_line(url, message):
    with pytest.raises(UrlRefused, match=message):
        url_check(url)


def test_the_setting_allows_internal_receivers(settings):
    settings.TEKTON_WEBHOOK_ALLOW_PRIVATE = True
    assert url_check("http://127.0.0.1:9/hook").address == "127.0.0.1"
