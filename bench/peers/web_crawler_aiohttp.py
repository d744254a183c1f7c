#!/usr/bin/python3
"""Peer of samples/web_crawler: the seed's exercise 3 written the way the seed
suggests, asyncio + aiohttp (one ClientSession, a Semaphore bounding the
concurrency) and its retry_async pattern (retries with a doubling delay on
5xx, timeouts and connection errors), links from html.parser (or bs4 with
--bs4). Same rules as the sample: same normal form of URLs, <base> honoured,
fragments dropped, only http(s), redirect targets fetched once, HTML only,
body cap, per-attempt timeout.

Standalone: web_crawler_aiohttp.py URL [--concurrency C] [--per-host H]
  [--timeout MS] [--retries R] [--max-pages N] [--same-host] [--bs4]
prints a summary.
As a bench peer (no argument): serves the demo site with our sample
($ACTORBUS_BUILD/bin/web_crawler serve, its own process and threads), crawls
it with our sample and with this crawler, alternating, and prints
{"records": [...]} for bench/run.py (group crawl_2000, pages_per_second).
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

PAGES = 2000
CONCURRENCY = 32
REPEAT = 3


class Retryable(Exception):
    def __init__(self, kind, status=0):
        super().__init__(kind)
        self.kind = kind
        self.status = status


def normalize(url):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    default = 80 if scheme == "http" else 443
    netloc = host if port is None or port == default else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def host_of(url):
    return urlsplit(url).netloc


class LinkParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hrefs = []
        self.base = None

    def handle_starttag(self, tag, attrs):
        if tag == "a" or (tag == "base" and self.base is None):
            for k, v in attrs:
                if k == "href" and v is not None:
                    if tag == "a":
                        self.hrefs.append(v)
                    else:
                        self.base = v
                    break


def hrefs_html_parser(html):
    p = LinkParser()
    p.feed(html)
    p.close()
    return p.hrefs, p.base


def hrefs_bs4(html):
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html, "html.parser")
    base = soup.find("base", href=True)
    return ([a["href"] for a in soup.find_all("a", href=True)],
            base["href"] if base else None)


def extract(html, page_url, find_hrefs):
    hrefs, base_href = find_hrefs(html)
    base = page_url
    if base_href is not None:
        b = normalize(urljoin(page_url, base_href.strip()))
        if b:
            base = b
    links, unique, dropped, repeated = [], set(), 0, 0
    for h in hrefs:
        u = normalize(urljoin(base, h.strip()))
        if u is None:
            dropped += 1
        elif u in unique:
            repeated += 1
        else:
            unique.add(u)
            links.append(u)
    return links, dropped, repeated


class Crawler:
    def __init__(self, start, concurrency=16, per_host=8, timeout_ms=10000,
                 retries=2, retry_delay_ms=50, max_pages=1000,
                 same_host=False, max_redirects=10, max_body=8 << 20,
                 find_hrefs=hrefs_html_parser):
        self.start = normalize(start)
        self.concurrency = concurrency
        self.per_host = per_host
        self.timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        self.retries = retries
        self.retry_delay = retry_delay_ms / 1000
        self.max_pages = max_pages
        self.same_host = same_host
        self.max_redirects = max_redirects
        self.max_body = max_body
        self.find_hrefs = find_hrefs
        self.results = {}
        self.seen = set()
        self.dispatched = 0
        self.dropped = self.offsite = self.duplicates = 0

    async def fetch(self, session, url):
        async with session.get(url, max_redirects=self.max_redirects,
                               timeout=self.timeout) as resp:
            status, final = resp.status, normalize(str(resp.url))
            if status >= 500:
                raise Retryable("server_error", status)
            if status >= 400:
                return "broken", status, final, None, 0
            if resp.content_type not in ("text/html", "application/xhtml+xml"):
                return "non_html", status, final, None, 0
            body = bytearray()
            async for chunk in resp.content.iter_chunked(1 << 16):
                body += chunk
                if len(body) > self.max_body:
                    return "too_large", status, final, None, len(body)
            return ("ok", status, final,
                    body.decode(resp.charset or "utf-8", "replace"), len(body))

    async def fetch_with_retry(self, session, url):
        delay, last = self.retry_delay, None
        for attempt in range(1, self.retries + 2):
            try:
                return (*await self.fetch(session, url), attempt)
            except Retryable as e:
                last = e
            except asyncio.TimeoutError:
                last = Retryable("timeout")
            except aiohttp.TooManyRedirects:
                return "too_many_redirects", 0, None, None, 0, attempt
            except aiohttp.ClientConnectionError:
                last = Retryable("connect")
            except aiohttp.ClientError:
                return "other", 0, None, None, 0, attempt
            if attempt <= self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        return last.kind, last.status, None, None, 0, self.retries + 1

    async def run(self):
        sem = asyncio.Semaphore(self.concurrency)
        tasks = set()
        start_host = host_of(self.start)
        connector = aiohttp.TCPConnector(limit=self.concurrency,
                                         limit_per_host=self.per_host)
        headers = {"Accept-Encoding": "identity",
                   "User-Agent": "aiohttp-web-crawler/1.0"}
        async with aiohttp.ClientSession(connector=connector,
                                         headers=headers) as session:
            def schedule(url, depth, referrer):
                if self.max_pages and self.dispatched >= self.max_pages:
                    return
                self.dispatched += 1
                t = asyncio.create_task(visit(url, depth, referrer))
                tasks.add(t)
                t.add_done_callback(tasks.discard)

            async def visit(url, depth, referrer):
                async with sem:
                    kind, status, final, body, size, attempts = \
                        await self.fetch_with_retry(session, url)
                self.results[url] = (kind, status, referrer, attempts, size)
                if final and final != url:
                    if final in self.seen:
                        return
                    self.seen.add(final)
                if kind != "ok":
                    return
                links, dropped, repeated = extract(body, final or url,
                                                   self.find_hrefs)
                self.dropped += dropped
                self.duplicates += repeated
                for link in links:
                    if self.same_host and host_of(link) != start_host:
                        self.offsite += 1
                        continue
                    if link in self.seen:
                        self.duplicates += 1
                        continue
                    self.seen.add(link)
                    schedule(link, depth + 1, url)

            self.seen.add(self.start)
            schedule(self.start, 0, "")
            while tasks:
                await asyncio.gather(*list(tasks))
        return self.results


def summary(results, seconds):
    kinds = {}
    for kind, *_ in results.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    return (f"fetched: {len(results)} URLs in {seconds:.3f} s, "
            f"{len(results) / seconds:.1f} pages/s; " +
            ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))


def crawl(url, **kw):
    c = Crawler(url, **kw)
    t0 = time.perf_counter()
    results = asyncio.run(c.run())
    return results, time.perf_counter() - t0


def ours(exe, url, concurrency):
    out = subprocess.run(
        [exe, url, "--same-host", "--max-pages", "0", "--concurrency",
         str(concurrency), "--per-host", str(concurrency), "--quiet"],
        check=True, capture_output=True, text=True, timeout=600).stdout
    n = int(re.search(r"fetched: (\d+) URLs", out).group(1))
    rate = float(re.search(r"([\d.]+) pages/s", out).group(1))
    return n, rate


def bench():
    build = os.environ.get("ACTORBUS_BUILD", "build")
    exe = os.path.join(build, "bin", "web_crawler")
    threads = 4 * CONCURRENCY
    server = subprocess.Popen(
        [exe, "serve", "--pages", str(PAGES), "--seed", "1", "--slow-ms", "50",
         "--threads", str(threads)],
        stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/) \((\d+) URLs reachable", line)
        if not m:
            raise RuntimeError(f"web_crawler serve printed {line!r}")
        url, reachable = m.group(1), int(m.group(2))
        ours(exe, url, CONCURRENCY)  # warm-up (the 503-once page fails here)
        best = {"actorbus": 0.0, "aiohttp": 0.0, "aiohttp_bs4": 0.0}
        found = {}
        for rep in range(REPEAT):
            n, rate = ours(exe, url, CONCURRENCY)
            found["actorbus"] = n
            best["actorbus"] = max(best["actorbus"], rate)
            for impl, fh in (("aiohttp", hrefs_html_parser),
                             ("aiohttp_bs4", hrefs_bs4)):
                if impl == "aiohttp_bs4" and rep > 0:
                    continue
                results, secs = crawl(url, concurrency=CONCURRENCY,
                                      per_host=CONCURRENCY, max_pages=0,
                                      same_host=True, find_hrefs=fh)
                found[impl] = len(results)
                best[impl] = max(best[impl], len(results) / secs)
                print(f"[web_crawler] {impl}: {summary(results, secs)}",
                      file=sys.stderr)
            print(f"[web_crawler] actorbus: {n} URLs, {rate:.1f} pages/s",
                  file=sys.stderr)
        # What the server answers alone (one page, a light curl multi
        # client): it must stay well above what either crawler asks of it.
        load = subprocess.run(
            [exe, "load", url + "p/1.html", "--requests", "20000",
             "--concurrency", str(CONCURRENCY)],
            check=True, capture_output=True, text=True, timeout=600).stdout
        server_rate = float(re.search(r"([\d.]+) requests/s", load).group(1))
        print(f"[web_crawler] server alone: {load.strip()}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
    records = []
    for impl, rate in best.items():
        metrics = {"pages_per_second": rate}
        if impl != "actorbus":
            # The redirect chain ends on a page that is fetched either through
            # it or by its own URL: one URL less in the first case.
            metrics["same_pages"] = int(all(
                found[i] in (reachable, reachable - 1)
                for i in (impl, "actorbus")))
        records.append({"group": f"crawl_{PAGES}", "impl": impl,
                        "metrics": metrics})
    records.append({"group": f"crawl_{PAGES}_server", "impl": "server_alone",
                    "metrics": {"requests_per_second": server_rate}})
    print(f"[web_crawler] site: {reachable} URLs reachable; found: {found}",
          file=sys.stderr)
    return {"records": records}


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=8)
    ap.add_argument("--timeout", type=int, default=10000)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--max-pages", type=int, default=1000)
    ap.add_argument("--same-host", action="store_true")
    ap.add_argument("--bs4", action="store_true")
    a = ap.parse_args(argv)
    results, secs = crawl(
        a.url, concurrency=a.concurrency, per_host=a.per_host,
        timeout_ms=a.timeout, retries=a.retries, max_pages=a.max_pages,
        same_host=a.same_host,
        find_hrefs=hrefs_bs4 if a.bs4 else hrefs_html_parser)
    print(summary(results, secs))
    for url, (kind, status, referrer, attempts, _) in sorted(results.items()):
        if kind not in ("ok", "non_html"):
            print(f"  {kind} {status} {url} <- {referrer} ({attempts} attempts)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1:])
    else:
        print(json.dumps(bench()))
