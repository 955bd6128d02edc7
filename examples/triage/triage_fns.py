"""Plain functions used as `python` nodes by triage.yaml: `state -> update`."""

URGENT_WORDS = ("down", "outage", "breach", "cannot log in", "data loss")


def classify(state: dict) -> dict:
    text = state["ticket"]
    lowered = text.lower()
    if any(w in lowered for w in URGENT_WORDS):
        label = "urgent"
    elif "?" in text or lowered.startswith(("how", "what", "can")):
        label = "question"
    else:
        label = "feedback"
    return {"labelled": {"text": text, "label": label}}


def collect(state: dict) -> dict:
    return {"urgent": [t["text"] for t in state["labelled"] if t["label"] == "urgent"]}
