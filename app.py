"""Start the studio: python app.py [--host 127.0.0.1] [--port 7860] [--share]"""
import argparse


def main(argv=None):
    p = argparse.ArgumentParser(description="Generative Deep Learning Studio")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: only this computer)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    a = p.parse_args(argv)
    from studio.app import build_app

    build_app().launch(server_name=a.host, server_port=a.port, share=a.share)


if __name__ == "__main__":
    main()
