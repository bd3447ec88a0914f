"""Campaign content: Markdown or HTML written by the admin, rendered per recipient.

The admin's subject and content are Jinja2 templates run in a *sandboxed* environment
with a fixed set of per-recipient fields (``name``, ``email``, ``unsubscribe_url``,
``sender_name``, ``subject``). Everything that does not depend on the recipient happens
once per campaign (``CampaignRenderer`` compiles it): Markdown is turned into HTML with the
template tags set aside as inert tokens, so a ``[link]({{ unsubscribe_url }})`` survives
Markdown's URL normalisation; per recipient only compiled templates run (tens of µs).

HTML output is autoescaped: a subscriber's name can never inject markup. The subject must
render to one line; the ``Mail`` model refuses anything else.

The sandbox stops templates from reaching Python's internals; on top of it a template
cannot make huge values in one step (``'x' * 10**9``, ``9**9**9``, ``range(10**6)``), and
whatever a template does wrong while it renders (``1/0``, a bad ``format``) is a
ContentError naming the field, never an exception that escapes: the admin API answers
400, a worker records the recipient failed. A mail part that renders to more than
MAX_RENDERED_BYTES is refused the same way (SES takes at most 10 MB per raw message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from pydantic import ValidationError

from mailroom.errors import ContentError
from mailroom.links import Links, fixed_links
from mailroom.mail import environment
from mailroom.models import Mail, Recipient

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

FIELDS = ("name", "email", "unsubscribe_url", "sender_name", "subject")
SAMPLE = Recipient(id="00000000-0000-4000-8000-000000000000", email="ada@example.com", name="Ada Lovelace")

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)

# What one rendered part (subject, text, HTML) may weigh: quoted-printable at worst triples
# it, and text + HTML stay well under SES's 10 MB raw message.
MAX_RENDERED_BYTES = 1024 * 1024
# Bounds on what a template can build in one operation.
MAX_RANGE = 10_000
MAX_EXPONENT = 100
MAX_REPEATED_ITEMS = 100_000


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} numbers")
    return numbers


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded (a string or list repeated into
    gigabytes, a number raised into a computation that never ends) and a shorter range()."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent over {MAX_EXPONENT}")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEATED_ITEMS
                ):
                    raise SecurityError(f"a value repeated into more than {MAX_REPEATED_ITEMS} items")
        return super().call_binop(context, operator, left, right)


@cache
def _sandbox(autoescape: bool) -> SandboxedEnvironment:
    return _Sandbox(autoescape)


def _render(field: str, template: Template, fields: dict[str, Any]) -> str:
    """Render one template; ContentError for anything it does wrong (a template error, a
    sandbox refusal, 1/0 or any other exception of its own making) or too big a result."""
    parts: list[str] = []
    size = 0
    try:
        # piece by piece, so that a loop that would write gigabytes stops at the limit
        for part in template.generate(fields):
            parts.append(part)
            size += len(part.encode("utf-8", errors="surrogatepass"))
            if size > MAX_RENDERED_BYTES:
                raise ContentError(field, f"renders to more than {MAX_RENDERED_BYTES} bytes")
    except ContentError:
        raise
    except TemplateError as exc:
        raise ContentError(field, f"cannot be rendered: {exc.message or exc}") from None
    except Exception as exc:  # the template's own fault: it runs no I/O, only its expressions
        raise ContentError(field, f"cannot be rendered: {type(exc).__name__}: {exc}") from None
    return "".join(parts)


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt  # imported here: only a Markdown campaign's render pays for it

    # Raw HTML inside Markdown is shown as text, not passed through: format "html" is for HTML.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _set_aside(source: str) -> tuple[str, dict[str, str]]:
    """Replace every template tag by an inert token Markdown leaves alone."""
    tags: dict[str, str] = {}

    def token(match: re.Match[str]) -> str:
        key = f"mrtag{len(tags)}x"
        tags[key] = match.group(0)
        return key

    return _TAG.sub(token, source), tags


def _restore(text: str, tags: dict[str, str]) -> str:
    for key, tag in tags.items():
        text = text.replace(key, tag)
    return text


class _TextOf(HTMLParser):
    """The readable text of an HTML fragment: block elements become line breaks, links keep their URL."""

    _BLOCKS = frozenset({"p", "div", "br", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "table", "ul", "ol", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._href: list[str | None] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        if tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)
        if tag == "a" and self._href:
            href = self._href.pop()
            if href:
                self.parts.append(f" ({href})")
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        lines = [" ".join(line.split()) for line in "".join(self.parts).splitlines()]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def html_to_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    return parser.text()


def _compile(field: str, source: str, autoescape: bool) -> Template:
    try:
        return _sandbox(autoescape).from_string(source)
    except TemplateSyntaxError as exc:
        raise ContentError(field, f"template error on line {exc.lineno}: {exc.message}") from None
    except RecursionError:  # e.g. thousands of nested parentheses: Jinja's parser recurses
        raise ContentError(field, "template error: the expressions are nested too deeply") from None


@dataclass(frozen=True)
class CampaignContent:
    subject: str
    content: str
    format: str  # "markdown" or "html"


class CampaignRenderer:
    """Compiles one campaign's subject and content once; renders a Mail per recipient."""

    def __init__(self, content: CampaignContent, sender_name: str, links: Links) -> None:
        self.sender_name = sender_name
        self.links = links
        self._subject = _compile("subject", content.subject, autoescape=False)
        if content.format == "markdown":
            inert, tags = _set_aside(content.content)
            html_source = _restore(_markdown().render(inert), tags)
            text_source = content.content
        else:
            html_source = content.content
            inert, tags = _set_aside(content.content)
            text_source = _restore(html_to_text(inert), tags)
        self._html = _compile("content", html_source, autoescape=True)
        self._text = _compile("content", text_source, autoescape=False)

    def fields(self, recipient: Recipient) -> dict[str, Any]:
        return {
            "name": recipient.name or "",
            "email": recipient.email,
            "unsubscribe_url": self.links.unsubscribe_url(recipient.id),
            "sender_name": self.sender_name,
        }

    def render(self, recipient: Recipient, tags: dict[str, str] | None = None) -> Mail:
        """The mail for one recipient, with its RFC 8058 one-click unsubscribe headers.
        Raises ContentError if the content cannot render for them."""
        fields = self.fields(recipient)
        subject = " ".join(_render("subject", self._subject, fields).split())
        fields["subject"] = subject
        body_html = _render("content", self._html, fields)
        body_text = _render("content", self._text, fields)
        if not subject:
            raise ContentError("subject", "renders to an empty line")
        layout = environment()
        context = {**fields, "body": Markup(body_html)}  # noqa: S704 - the sandbox autoescaped every field in it  # nosec B704
        try:
            return Mail(
                to=recipient.email,
                subject=subject,
                html=layout.get_template("campaign.html.j2").render(context),
                text=layout.get_template("campaign.txt.j2").render({**fields, "body": body_text}),
                headers=self.links.unsubscribe_headers(fields["unsubscribe_url"]),
                tags=tags or {},
            )
        except ValidationError as exc:
            raise ContentError("subject", exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def validate(content: CampaignContent, sender_name: str = "Mailroom") -> None:
    """Raise ContentError if the campaign cannot be compiled or rendered for a sample recipient."""
    CampaignRenderer(content, sender_name, fixed_links()).render(SAMPLE)
