#!/usr/bin/env python3
"""Python clients (standard library only) for what curl/wget/swaks/lftp cannot do, used by
make-app-fixtures.sh. Each client appends one JSON line per file it sent or received to REC
(the file's bytes as they went over the wire are saved under FILES), with the TCP endpoints
it used, so that make_app_expect.py can find the connection without guessing.

  app_clients.py eml-dots OUT MSGID              message whose body has lines starting with '.'
  app_clients.py eml-attach OUT MSGID BIN TXT    multipart/mixed, two base64 attachments
  app_clients.py eml-simple OUT MSGID SUBJECT    short text message
  app_clients.py smtp-two HOST PORT REC EML1 EML2     two messages on one SMTP connection
  app_clients.py smtp-bdat HOST PORT REC EML CHUNK    BDAT/CHUNKING (RFC 3030), 2+ chunks
  app_clients.py http-keepalive HOST REC FILES F1 F2 F3
  app_clients.py http-pipeline HOST REC FILES F1 F2
  app_clients.py http-s3 HOST REC FILES BUCKET KEY PART1 PART2
  app_clients.py ftp-session HOST4 HOST6 REC FILES SRVROOT
"""
import email.policy
import email.utils
import http.client
import io
import json
import os
import shutil
import smtplib
import socket
import sys
import ftplib
from email.message import EmailMessage

FROM, TO, TO2 = "joe@example.org", "bob@example.net", "carol@example.net"


def date():
    return email.utils.formatdate(localtime=False)


def rec(recfile, **kw):
    with open(recfile, "a") as f:
        f.write(json.dumps(kw) + "\n")


def ep(sock_name):
    return [sock_name[0], sock_name[1]]


# ---------------------------------------------------------------- messages (RFC 5322, CRLF)
def eml_dots(out, msgid):
    head = ("From: Joe <%s>\r\nTo: Bob <%s>\r\nSubject: dot-stuffing test\r\nDate: %s\r\n"
            "Message-ID: <%s>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii"
            "\r\n\r\n" % (FROM, TO, date(), msgid))
    body = ("Bob,\r\n"
            ".this line starts with one dot\r\n"
            "..this one with two\r\n"
            ".\r\n"
            "(the line above is a single dot, the next one a dot and a space)\r\n"
            ". \r\n"
            "...\r\n"
            "last line of the message\r\n")
    with open(out, "wb") as f:
        f.write((head + body).encode())


def eml_attach(out, msgid, binf, txtf):
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = "Joe <%s>" % FROM
    m["To"] = "Bob <%s>, Carol <%s>" % (TO, TO2)
    m["Subject"] = "two attachments"
    m["Date"] = date()
    m["Message-ID"] = "<%s>" % msgid
    m.set_content("See the two attached files.\n")
    for path, (maint, sub) in ((binf, ("application", "octet-stream")),
                               (txtf, ("text", "plain"))):
        with open(path, "rb") as f:
            data = f.read()
        # bytes content: always base64, so the decoded part is exactly the file
        m.add_attachment(data, maintype=maint, subtype=sub, filename=os.path.basename(path))
    with open(out, "wb") as f:
        f.write(m.as_bytes(policy=email.policy.SMTP))


def eml_simple(out, msgid, subject, to=TO):
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = "Joe <%s>" % FROM
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = date()
    m["Message-ID"] = "<%s>" % msgid
    m.set_content("Message %s.\n%s\n" % (subject, "x" * 200))
    with open(out, "wb") as f:
        f.write(m.as_bytes(policy=email.policy.SMTP))


# ---------------------------------------------------------------- SMTP
def smtp_two(host, port, recf, eml1, eml2):
    s = smtplib.SMTP(host, int(port), local_hostname="joe-pc.example.org", timeout=20)
    local = ep(s.sock.getsockname())
    for eml, rcpts in ((eml1, [TO]), (eml2, [TO, TO2])):
        with open(eml, "rb") as f:
            data = f.read()
        # sendmail dot-stuffs and appends CRLF.CRLF; data already ends with CRLF
        s.sendmail(FROM, rcpts, data)
        rec(recf, kind="smtp", path=eml, name=os.path.basename(eml), command="DATA",
            mail_from=FROM, rcpt_to=rcpts, client=local, tool="python3 smtplib", server="aiosmtpd",
            note="two messages on one connection (smtplib sendmail twice, RSET-free)")
    s.quit()


def smtp_bdat(host, port, recf, eml, chunk):
    chunk = int(chunk)
    with open(eml, "rb") as f:
        data = f.read()
    s = smtplib.SMTP(host, int(port), local_hostname="joe-pc.example.org", timeout=20)
    local = ep(s.sock.getsockname())
    s.ehlo()
    if not s.has_extn("chunking"):
        raise SystemExit("server does not advertise CHUNKING")
    s.mail(FROM)
    s.rcpt(TO)
    sizes, off = [], 0
    while off < len(data):
        part = data[off:off + chunk]
        off += len(part)
        last = off >= len(data)
        # RFC 3030: "BDAT <size> [LAST]" CRLF, then exactly <size> octets, no dot-stuffing
        s.send(("BDAT %d%s\r\n" % (len(part), " LAST" if last else "")).encode() + part)
        code, msg = s.getreply()
        if code != 250:
            raise SystemExit("BDAT refused: %d %s" % (code, msg))
        sizes.append(len(part))
    s.quit()
    rec(recf, kind="smtp", path=eml, name=os.path.basename(eml), command="BDAT",
        bdat_chunks=sizes, mail_from=FROM, rcpt_to=[TO], client=local, server="postfix",
        tool="python3 smtplib (raw BDAT commands)")


# ---------------------------------------------------------------- HTTP
def http_keepalive(host, recf, files, *paths):
    c = http.client.HTTPConnection(host, 80, timeout=20)
    c.connect()
    local = ep(c.sock.getsockname())
    for i, p in enumerate(paths):
        name = os.path.basename(p)
        with open(p, "rb") as f:
            body = f.read()
        uri = "/upload/" + name
        c.request("PUT", uri, body=body, headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            raise SystemExit("keep-alive PUT %s: %d" % (uri, r.status))
        rec(recf, kind="http", path=p, name=name, method="PUT", uri=uri, client=local,
            request_index=i, tool="python3 http.client",
            note="keep-alive: 3 requests on one connection, request %d" % (i + 1))
    c.close()


def http_pipeline(host, recf, files, *paths):
    s = socket.create_connection((host, 80), timeout=20)
    local = ep(s.getsockname())
    out = b""
    for p in paths:
        with open(p, "rb") as f:
            body = f.read()
        uri = "/upload/" + os.path.basename(p)
        out += ("PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                "Content-Length: %d\r\n\r\n" % (uri, host, len(body))).encode() + body
    # both requests in one write: the second is on the wire before the first is answered
    s.sendall(out)
    got = b""
    while got.count(b"HTTP/1.1 201") < len(paths):
        b = s.recv(65536)
        if not b:
            raise SystemExit("pipeline: connection closed early")
        got += b
    s.close()
    for i, p in enumerate(paths):
        rec(recf, kind="http", path=p, name=os.path.basename(p), method="PUT",
            uri="/upload/" + os.path.basename(p), client=local, request_index=i,
            tool="python3 socket", note="pipelining: both requests sent in one write")


def http_s3(host, recf, files, bucket, key, *parts):
    c = http.client.HTTPConnection(host, 80, timeout=20)
    c.connect()
    local = ep(c.sock.getsockname())
    base = "/%s/%s" % (bucket, key)
    c.request("POST", base + "?uploads", body=b"")
    r = c.getresponse()
    xml = r.read().decode()
    upload_id = xml.split("<UploadId>")[1].split("</UploadId>")[0]
    etags, whole = [], b""
    for n, p in enumerate(parts, 1):
        with open(p, "rb") as f:
            body = f.read()
        whole += body
        uri = "%s?partNumber=%d&uploadId=%s" % (base, n, upload_id)
        c.request("PUT", uri, body=body, headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        etags.append(r.getheader("ETag"))
        rec(recf, kind="http", path=p, name=os.path.basename(p), method="PUT", uri=uri,
            client=local, tool="python3 http.client",
            note="S3-style multipart upload, part %d of object %s" % (n, base))
    done = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
        "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e)
        for n, e in enumerate(etags, 1))
    c.request("POST", "%s?uploadId=%s" % (base, upload_id), body=done.encode(),
              headers={"Content-Type": "application/xml"})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit("CompleteMultipartUpload: %d" % r.status)
    c.close()
    obj = os.path.join(files, key)
    with open(obj, "wb") as f:
        f.write(whole)
    rec(recf, kind="http-object", path=obj, name=key, method="POST",
        uri="%s?uploadId=%s" % (base, upload_id), client=local, upload_id=upload_id,
        parts=[os.path.basename(p) for p in parts], tool="python3 http.client",
        note="the object CompleteMultipartUpload assembles: part 1 then part 2")


# ---------------------------------------------------------------- FTP
class RecFTP(ftplib.FTP):
    """Remembers every reply line and the endpoints of each data connection."""

    def __init__(self, *a, **kw):
        self.replies, self.data_eps = [], None
        super().__init__(*a, **kw)

    def getresp(self):
        r = super().getresp()
        self.replies.append(r)
        return r

    def ntransfercmd(self, cmd, rest=None):
        # EPRT/PORT: the server connects to us; accept() returns the data socket either way
        conn, size = super().ntransfercmd(cmd, rest)
        self.data_eps = {"client": ep(conn.getsockname()), "server": ep(conn.getpeername())}
        return conn, size


def ftp_session(host4, host6, recf, files, srvroot):
    def write(name, data):
        p = os.path.join(files, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def rd(name):
        with open(os.path.join(files, name), "rb") as f:
            return f.read()

    snap = os.path.join(files, "server-copies")
    os.makedirs(snap, exist_ok=True)
    seq = [0]

    def server_copy(remote):
        # the file as the server holds it right after the transfer (later steps rename it)
        seq[0] += 1
        dst = os.path.join(snap, "%02d-%s" % (seq[0], os.path.basename(remote)))
        shutil.copyfile(os.path.join(srvroot, remote), dst)
        return dst

    def up(ftp, cmd, name, wire_path, mode, note, remote=None, **extra):
        rec(recf, kind="ftp", direction="upload", command=cmd, name=name, path=wire_path,
            control={"client": ep(ftp.sock.getsockname()), "server": ep(ftp.sock.getpeername())},
            data=ftp.data_eps, data_mode=mode, server_path=server_copy(remote or name),
            tool="python3 ftplib", note=note, **extra)

    ftp = RecFTP()
    ftp.connect(host4, 21, timeout=20)
    ftp.login("joe", "secret")
    ftp.mkd("joe-dir")
    ftp.cwd("joe-dir")
    d = "joe-dir/"

    # STOU: the server picks the name and says it in the 150 reply
    data = rd("stou.bin")
    ftp.replies.clear()
    ftp.storbinary("STOU", io.BytesIO(data))
    line = next(r for r in ftp.replies if r.startswith("150"))
    stou_name = line.split("FILE:", 1)[1].strip()
    up(ftp, "STOU", stou_name, os.path.join(files, "stou.bin"), "PASV",
       "STOU: server-chosen name from the 150 reply (%s)" % line, remote=d + stou_name)

    # STOR of part 1, then APPE of part 2 to the same name
    p1, p2 = rd("appe-part1.bin"), rd("appe-part2.bin")
    ftp.storbinary("STOR appe.bin", io.BytesIO(p1))
    up(ftp, "STOR", "appe.bin", os.path.join(files, "appe-part1.bin"), "PASV",
       "first part, before the APPE", remote=d + "appe.bin")
    ftp.storbinary("APPE appe.bin", io.BytesIO(p2))
    up(ftp, "APPE", "appe.bin", os.path.join(files, "appe-part2.bin"), "PASV",
       "APPE: appended to appe.bin; the server file is part1+part2", remote=d + "appe.bin")

    # an "interrupted" STOR of the first bytes, then REST <n> + STOR of the rest
    whole = rd("resume.bin")
    n = 70000
    head = write("resume-head.bin", whole[:n])
    tail = write("resume-tail.bin", whole[n:])
    ftp.storbinary("STOR resume.bin", io.BytesIO(whole[:n]))
    up(ftp, "STOR", "resume.bin", head, "PASV", "first %d bytes of resume.bin" % n,
       remote=d + "resume.bin")
    ftp.storbinary("STOR resume.bin", io.BytesIO(whole[n:]), rest=n)
    up(ftp, "STOR", "resume.bin", tail, "PASV",
       "REST %d then STOR: bytes %d.. of resume.bin; the server file is the whole file" % (n, n),
       remote=d + "resume.bin", rest=n, full_path=os.path.join(files, "resume.bin"))

    # TYPE A: storlines sends every line with CRLF
    txt = rd("notes.txt")
    wire = write("notes.txt.crlf", b"".join(l.rstrip(b"\n") + b"\r\n"
                                            for l in txt.splitlines(keepends=True)))
    ftp.storlines("STOR notes.txt", io.BytesIO(txt))
    up(ftp, "STOR", "notes.txt", wire, "PASV",
       "TYPE A (ASCII) upload with storlines: LF line ends become CRLF on the wire",
       remote=d + "notes.txt", type="A", local_path=os.path.join(files, "notes.txt"))

    # empty file
    ftp.storbinary("STOR empty.bin", io.BytesIO(b""))
    up(ftp, "STOR", "empty.bin", write("empty.bin", b""), "PASV", "0-byte upload",
       remote=d + "empty.bin")

    # RETR of a file that was on the server before (download)
    ftp.cwd("/")
    got = bytearray()
    ftp.retrbinary("RETR download.bin", got.extend)
    rec(recf, kind="ftp", direction="download", command="RETR", name="download.bin",
        path=write("download.bin", bytes(got)),
        control={"client": ep(ftp.sock.getsockname()), "server": ep(ftp.sock.getpeername())},
        data=ftp.data_eps, data_mode="PASV", server_path=os.path.join(srvroot, "download.bin"),
        tool="python3 ftplib", note="RETR: the server sends the file")

    # commands without data: RNFR/RNTO, scratch upload + DELE
    ftp.cwd("joe-dir")
    ftp.rename("notes.txt", "notes-renamed.txt")
    ftp.storbinary("STOR scratch.bin", io.BytesIO(rd("scratch.bin")))
    up(ftp, "STOR", "scratch.bin", os.path.join(files, "scratch.bin"), "PASV",
       "uploaded, then deleted with DELE", remote=d + "scratch.bin")
    ftp.delete("scratch.bin")
    ftp.quit()

    # IPv6, active mode: ftplib sends EPRT and the server opens the data connection
    ftp6 = RecFTP()
    ftp6.connect(host6, 21, timeout=20)
    ftp6.login("joe", "secret")
    ftp6.set_pasv(False)
    ftp6.storbinary("STOR v6-active.bin", io.BytesIO(rd("v6-active.bin")))
    up(ftp6, "STOR", "v6-active.bin", os.path.join(files, "v6-active.bin"), "EPRT",
       "IPv6 active mode (EPRT): data connection opened by the server")
    ftp6.quit()


def main(argv):
    cmd, args = argv[0], argv[1:]
    fn = {"eml-dots": eml_dots, "eml-attach": eml_attach, "eml-simple": eml_simple,
          "smtp-two": smtp_two, "smtp-bdat": smtp_bdat, "http-keepalive": http_keepalive,
          "http-pipeline": http_pipeline, "http-s3": http_s3, "ftp-session": ftp_session}[cmd]
    fn(*args)


if __name__ == "__main__":
    main(sys.argv[1:])
