"""Start the studio: python app.py [--host 127.0.0.1] [--port 7860] [--auth user:password] [--share]"""
import argparse
import os
import sys

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """'user:password' -> ("user", "password"); the password may itself contain ':'."""
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth needs USER:PASSWORD, both non-empty")
    return user, password


def main(argv=None):
    p = argparse.ArgumentParser(description="Generative Deep Learning Studio")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: only this computer; 0.0.0.0 serves your network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", type=parse_auth, default=parse_auth(os.environ.get("STUDIO_AUTH")),
                   metavar="USER:PASSWORD", help="ask visitors to log in (also $STUDIO_AUTH)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    a = p.parse_args(argv)
    if a.host not in LOCAL_HOSTS or a.share:
        where = "a public gradio.live link" if a.share else f"every computer that can reach {a.host}:{a.port}"
        print(f"WARNING: the studio is served to {where}. Visitors share this machine's cores and its "
              "training slot, and can upload files and start training runs."
              + ("" if a.auth else " Add --auth USER:PASSWORD to ask them to log in."), file=sys.stderr, flush=True)
    from studio.app import build_app, serving

    build_app().launch(server_name=a.host, server_port=a.port, share=a.share, **serving(a.auth))


if __name__ == "__main__":
    main()
