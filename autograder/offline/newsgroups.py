"""A generated stand-in for the 20 Newsgroups corpus, in the cache format fetch_20newsgroups reads offline.

The real corpus cannot be downloaded here, so we write posts over the 20 real newsgroup names, each built
from its group's topic words (in varying inflections) and common English, with the parts a real post has
(headers, a quoted reply, a signature) so that `remove=("headers", "footers", "quotes")` has work to do.
Groups that overlap in reality (the comp.* groups, the religion groups, talk.politics.*) share words, so
classifiers do well but not perfectly. Seeded: the same cache every time. Production images ship the real
corpus in the same place instead.

Each post also ends with a few lines drawn from a second, per-post random stream (so the rest of the post does
not depend on them), which give the corpus properties of the real one that task 5's query probe relies on:
a sentence with some of the group's rarer keywords (KEYWORDS), which the corpus uses only in the singular, as
real posts use many words in one form only; in three groups, function words typical of them (SINK_STOPWORDS:
religion posts say "he/him/his", ...), as function-word use differs between real groups; and a thank-you to a
person whose name comes from a pool of the post's split only (TRAIN_NAMES / TEST_NAMES), as real test posts
have words the training posts never use. The probe's hidden queries use the keywords' plural forms and these
function words; the rubric looks for test-only names in a vocabulary that should know only the training split.
"""

from __future__ import annotations

import codecs
import pickle
import random
import tempfile
from pathlib import Path

CACHE_NAME = "20news-bydate_py3.pkz"  # what sklearn.datasets.fetch_20newsgroups looks for in data_home
TRAIN_PER_GROUP = 110
TEST_PER_GROUP = 70
SEED = 20261123

# Topic words per group: nouns (inflected as singular/plural) and verbs (inflected -s/-ing/-ed).
TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "alt.atheism": (["atheist", "argument", "evidence", "god", "belief", "morality", "claim", "proof", "religion",
                     "philosopher", "existence", "debate", "skeptic", "theist", "dogma"],
                    ["believe", "argue", "prove", "reject", "question", "debate"]),
    "comp.graphics": (["image", "pixel", "polygon", "texture", "renderer", "format", "color", "shader", "bitmap",
                       "jpeg", "animation", "viewer", "algorithm", "vertex", "palette"],
                      ["render", "convert", "display", "compress", "draw", "scale"]),
    "comp.os.ms-windows.misc": (["window", "driver", "dll", "program", "file", "directory", "installer", "icon",
                                 "setting", "menu", "crash", "registry", "desktop", "font", "manager"],
                                ["install", "crash", "reboot", "configure", "load", "launch"]),
    "comp.sys.ibm.pc.hardware": (["motherboard", "drive", "controller", "jumper", "card", "bios", "slot", "port",
                                  "chip", "cable", "processor", "bus", "disk", "memory", "clone"],
                                 ["boot", "format", "upgrade", "connect", "jumper", "plug"]),
    "comp.sys.mac.hardware": (["mac", "powerbook", "monitor", "apple", "quadra", "centris", "scsi", "floppy",
                               "modem", "keyboard", "mouse", "simm", "battery", "duo", "adapter"],
                              ["upgrade", "plug", "reset", "connect", "boot", "charge"]),
    "comp.windows.x": (["server", "client", "widget", "motif", "display", "xterm", "window", "toolkit", "event",
                        "resource", "library", "application", "font", "cursor", "manager"],
                       ["compile", "link", "display", "configure", "run", "handle"]),
    "misc.forsale": (["offer", "price", "sale", "condition", "shipping", "buyer", "seller", "item", "box",
                      "dollar", "manual", "deal", "collection", "ticket", "stereo"],
                     ["sell", "ship", "offer", "trade", "pay", "include"]),
    "rec.autos": (["car", "engine", "dealer", "tire", "brake", "transmission", "mileage", "sedan", "wagon",
                   "clutch", "gas", "oil", "mechanic", "highway", "model"],
                  ["drive", "park", "repair", "accelerate", "steer", "tow"]),
    "rec.motorcycles": (["bike", "rider", "helmet", "motorcycle", "harley", "throttle", "lane", "gear",
                         "leather", "dod", "exhaust", "saddle", "kawasaki", "honda", "wheelie"],
                        ["ride", "lean", "crash", "shift", "wave", "brake"]),
    "rec.sport.baseball": (["pitcher", "inning", "hitter", "batter", "base", "homer", "season", "league", "bat",
                            "catcher", "stadium", "umpire", "strikeout", "dodger", "yankee"],
                           ["pitch", "hit", "score", "trade", "catch", "bat"]),
    "rec.sport.hockey": (["goalie", "puck", "playoff", "penalty", "skater", "rink", "stick", "period", "nhl",
                          "defenseman", "cup", "leaf", "bruin", "shot", "ice"],
                         ["score", "skate", "shoot", "check", "save", "pass"]),
    "sci.crypt": (["encryption", "key", "clipper", "algorithm", "cipher", "chip", "escrow", "privacy", "nsa",
                   "security", "code", "wiretap", "signature", "protocol", "secret"],
                  ["encrypt", "decrypt", "break", "sign", "protect", "intercept"]),
    "sci.electronics": (["circuit", "voltage", "resistor", "capacitor", "amplifier", "transistor", "signal",
                         "battery", "wire", "current", "diode", "oscillator", "ground", "switch", "meter"],
                        ["solder", "measure", "amplify", "switch", "wire", "power"]),
    "sci.med": (["patient", "doctor", "disease", "symptom", "treatment", "drug", "infection", "diet", "pain",
                 "study", "cancer", "medicine", "therapy", "clinic", "vitamin"],
                ["treat", "diagnose", "prescribe", "recover", "infect", "heal"]),
    "sci.space": (["orbit", "shuttle", "launch", "satellite", "nasa", "moon", "rocket", "mission", "planet",
                   "astronaut", "spacecraft", "probe", "station", "telescope", "lunar"],
                  ["launch", "orbit", "land", "fly", "observe", "dock"]),
    "soc.religion.christian": (["church", "christ", "faith", "bible", "prayer", "scripture", "sin", "jesus",
                                "gospel", "christian", "grace", "spirit", "sermon", "pastor", "love"],
                               ["pray", "worship", "forgive", "believe", "preach", "repent"]),
    "talk.politics.guns": (["gun", "firearm", "weapon", "amendment", "rifle", "handgun", "militia", "ammunition",
                            "permit", "owner", "crime", "shooting", "nra", "pistol", "ban"],
                           ["shoot", "carry", "ban", "regulate", "own", "defend"]),
    "talk.politics.mideast": (["israel", "arab", "palestinian", "turkey", "armenian", "village", "army",
                               "occupation", "refugee", "jew", "muslim", "border", "massacre", "territory",
                               "peace"],
                              ["occupy", "attack", "negotiate", "flee", "kill", "settle"]),
    "talk.politics.misc": (["government", "tax", "president", "clinton", "congress", "law", "policy", "vote",
                            "budget", "election", "liberal", "conservative", "senate", "economy", "job"],
                           ["vote", "tax", "spend", "elect", "reform", "govern"]),
    "talk.religion.misc": (["god", "moral", "cult", "koresh", "prophet", "belief", "religion", "bible",
                            "truth", "waco", "spirit", "faith", "sect", "doctrine", "miracle"],
                           ["believe", "preach", "follow", "claim", "worship", "obey"]),
}

# Rarer keywords per group, used by the corpus only in the singular; their plurals (regular, and mapped to the
# singular by the Porter, Snowball and Lancaster stemmers and by WordNet's lemmatiser) never occur in it.
KEYWORDS: dict[str, list[str]] = {
    "alt.atheism": ["agnostic", "humanist", "rationalist", "secularist", "freethinker", "nihilist"],
    "comp.graphics": ["gradient", "contour", "histogram", "thumbnail", "hologram", "mesh"],
    "comp.os.ms-windows.misc": ["wallpaper", "shortcut", "utility", "patch", "wizard"],
    "comp.sys.ibm.pc.hardware": ["socket", "partition", "fan", "sector", "tower", "cache"],
    "comp.sys.mac.hardware": ["trackball", "macintosh", "charger", "emulator", "dongle"],
    "comp.windows.x": ["daemon", "terminal", "compiler", "workstation", "kernel", "callback"],
    "misc.forsale": ["bargain", "receipt", "warranty", "auction", "discount", "coupon"],
    "rec.autos": ["convertible", "bumper", "radiator", "muffler", "windshield", "headlight"],
    "rec.motorcycles": ["sidecar", "kickstand", "visor", "handlebar", "chopper", "scooter"],
    "rec.sport.baseball": ["shortstop", "bullpen", "outfielder", "doubleheader", "slugger", "fastball"],
    "rec.sport.hockey": ["linesman", "winger", "zamboni", "goaltender", "slapshot", "forward"],
    "sci.crypt": ["cryptographer", "hash", "keystroke", "eavesdropper", "decoder", "password"],
    "sci.electronics": ["inductor", "potentiometer", "thermistor", "relay", "breadboard", "rectifier"],
    "sci.med": ["antibiotic", "vaccine", "allergy", "migraine", "surgeon", "tumor"],
    "sci.space": ["asteroid", "comet", "meteor", "cosmonaut", "booster", "payload"],
    "soc.religion.christian": ["apostle", "disciple", "psalm", "parable", "hymn", "sacrament"],
    "talk.politics.guns": ["revolver", "shotgun", "holster", "cartridge", "bullet", "silencer"],
    "talk.politics.mideast": ["mosque", "synagogue", "embassy", "checkpoint", "diplomat", "militant"],
    "talk.politics.misc": ["senator", "lobbyist", "deficit", "legislator", "subsidy", "bureaucrat"],
    "talk.religion.misc": ["heretic", "mystic", "oracle", "zealot", "ritual", "astrologer"],
}
# Function words (in both NLTK's and scikit-learn's English stopword lists) that three groups use often.
SINK_STOPWORDS: dict[str, list[str]] = {
    "soc.religion.christian": ["he", "him", "his", "himself", "whom"],
    "talk.politics.guns": ["they", "them", "themselves", "against", "during"],
    "sci.med": ["she", "her", "herself", "hers", "between"],
}
KEYWORD_SENTENCES = 3
KEYWORD_TEMPLATES = [
    "Some {adj} advice about the {kw} would help.",
    "Where can I find a {adj} {kw}?",
    "The {kw} is {adj}, and so is the {kw2}.",
    "Has anybody compared the {kw} with the {kw2}?",
]


def _names(rng: random.Random, count: int) -> list[str]:
    """Made-up surnames (consonant-vowel syllables ending in k, x or z: no stemmer changes them)."""
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice("bdfgklmnprstv") + rng.choice("aeiou") for _ in range(rng.randint(2, 3)))
        name += rng.choice("kxz")
        if name not in names:
            names.append(name)
    return names


_NAME_POOL = _names(random.Random(SEED + 7), 400)
TRAIN_NAMES, TEST_NAMES = _NAME_POOL[:200], _NAME_POOL[200:]

COMMON_NOUNS = ["people", "time", "thing", "problem", "way", "question", "idea", "point", "system", "number",
                "information", "group", "year", "day", "example", "reason", "post", "article", "answer", "fact"]
COMMON_VERBS = ["think", "know", "want", "need", "say", "see", "find", "try", "use", "tell", "read", "mean"]
ADJECTIVES = ["good", "new", "old", "big", "small", "important", "different", "real", "strange", "possible",
              "expensive", "interesting", "serious", "simple", "best", "wrong", "clear", "recent"]
TEMPLATES = [
    "I {cverb} the {noun} {verb_s} {adv} with {det} {adj} {noun2}.",
    "Has anyone {verb_ed} {det} {noun} before {verb_ing} the {noun2}?",
    "The {adj} {nouns} are {verb_ing} {adv}, and {det} {cnoun} {cverb_s} why.",
    "We {verb_ed} the {noun} last {cnoun} but the {nouns2} {verb} {adv}.",
    "If you {verb} {det} {adj} {noun}, the {noun2} will {verb2} too.",
    "My {cnoun} is that {nouns} {verb2} {det} {adj} {noun2} {adv}.",
    "Does {det} {noun} {verb} {adj} {nouns2} or only the {cnoun}?",
    "{Det} {noun} and the {noun2} were {verb_ed} by {det} {adj} {cnoun}.",
]
DETERMINERS = ["the", "a", "this", "that", "every", "some", "any", "my", "our", "their"]
ADVERBS = ["really", "quickly", "again", "often", "never", "always", "badly", "well", "here", "now"]
FIRST_NAMES = ["john", "mary", "steve", "linda", "dave", "karen", "mike", "susan", "tom", "lisa", "bill", "anne"]
HOSTS = ["cs.cmu.edu", "netcom.com", "uiuc.edu", "mit.edu", "berkeley.edu", "sun.com", "ucsd.edu", "rice.edu"]


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _verb_forms(verb: str) -> dict[str, str]:
    stem = verb[:-1] if verb.endswith("e") and not verb.endswith("ee") else verb
    third = verb + "es" if verb.endswith(("s", "sh", "ch", "x")) else verb + "s"
    return {"verb": verb, "verb_s": third, "verb_ing": stem + "ing", "verb_ed": stem + "ed"}


def _sentence(rng: random.Random, group: str, topic_share: float = 0.75) -> str:
    nouns, verbs = TOPICS[group]

    def noun() -> str:
        return rng.choice(nouns) if rng.random() < topic_share else rng.choice(COMMON_NOUNS)

    forms = _verb_forms(rng.choice(verbs))
    forms2 = _verb_forms(rng.choice(verbs))
    common = _verb_forms(rng.choice(COMMON_VERBS))
    fields = {
        **forms, "verb2": forms2["verb"], "noun": noun(), "noun2": noun(), "nouns": _plural(noun()),
        "nouns2": _plural(noun()), "cnoun": rng.choice(COMMON_NOUNS), "cverb": common["verb"],
        "cverb_s": common["verb_s"], "adj": rng.choice(ADJECTIVES), "adv": rng.choice(ADVERBS),
        "det": rng.choice(DETERMINERS),
    }
    fields["Det"] = fields["det"].capitalize()
    return rng.choice(TEMPLATES).format(**fields)


def post_body(rng: random.Random, group: str, sentences: tuple[int, int] = (4, 9)) -> str:
    """The text of a post without headers, quote or signature."""
    return " ".join(_sentence(rng, group) for _ in range(rng.randint(*sentences)))


def _extra(rng: random.Random, group: str, names: list[str]) -> str:
    """The post's last lines: its group's keywords, function words typical of the group, a thank-you."""
    lines = []
    for _ in range(KEYWORD_SENTENCES):
        keywords = rng.sample(KEYWORDS[group], 2)
        lines.append(rng.choice(KEYWORD_TEMPLATES).format(kw=keywords[0], kw2=keywords[1],
                                                          adj=rng.choice(ADJECTIVES)))
    if group in SINK_STOPWORDS:
        words = SINK_STOPWORDS[group]
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 7))).capitalize() + ".")
    lines.append(f"Thanks to {rng.choice(names).capitalize()} for the hint.")
    return " ".join(lines)


def _post(rng: random.Random, group: str, extra: str = "") -> str:
    author = rng.choice(FIRST_NAMES)
    host = rng.choice(HOSTS)
    nouns, _ = TOPICS[group]
    subject = f"{'Re: ' if rng.random() < 0.5 else ''}{rng.choice(nouns)} {rng.choice(COMMON_NOUNS)}"
    body = post_body(rng, group) + (" " + extra if extra else "")
    lines = [f"From: {author}@{host} ({author.capitalize()})", f"Subject: {subject}",
             f"Organization: {host.split('.')[0].upper()}", f"Lines: {body.count(' ') // 10 + 3}", ""]
    if rng.random() < 0.4:
        other = rng.choice(FIRST_NAMES)
        lines += [f"In article <{rng.randint(1000, 99999)}@{host}>, {other}@{host} writes:",
                  "> " + _sentence(rng, group), ""]
    lines.append(body)
    if rng.random() < 0.5:
        lines += ["", "-- ", f"{author.capitalize()} | {host}"]
    return "\n".join(lines) + "\n"


def write_newsgroups_cache(data_home: Path) -> str:
    """Write `<data_home>/20news-bydate_py3.pkz` as scikit-learn's fetch_20newsgroups expects it."""
    from sklearn.datasets import load_files

    rng = random.Random(SEED)
    data_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        counter = 10000
        for split, per_group in (("train", TRAIN_PER_GROUP), ("test", TEST_PER_GROUP)):
            for group in TOPICS:
                folder = Path(tmp) / f"20news-bydate-{split}" / group
                folder.mkdir(parents=True)
                for _ in range(per_group):
                    counter += 1
                    extra = _extra(random.Random(SEED * 100_000 + counter), group,
                                   TRAIN_NAMES if split == "train" else TEST_NAMES)
                    (folder / str(counter)).write_text(_post(rng, group, extra), encoding="latin-1")
        cache = {split: load_files(str(Path(tmp) / f"20news-bydate-{split}"), encoding="latin1")
                 for split in ("train", "test")}
    # This is sklearn's own cache format (a zlib-compressed pickle of its Bunch objects), written by us,
    # read by fetch_20newsgroups inside the sandbox. The grader never unpickles anything a sandbox wrote.
    (data_home / CACHE_NAME).write_bytes(codecs.encode(pickle.dumps(cache), "zlib_codec"))
    total = 20 * (TRAIN_PER_GROUP + TEST_PER_GROUP)
    return f"generated 20 Newsgroups cache: {total} posts in 20 groups (seed {SEED})"
