"""The Gradio studio: layout and wiring only; the maths lives in models/."""
