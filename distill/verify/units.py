"""Units of a final answer: ``5\\text{ m}``, ``500 cm``, ``\\$12``, ``45^\\circ``, ``20\\%``, ``60 mph``.

    split_unit(text) -> Quantity(magnitude, unit) | None    # None: the answer carries no unit
    conversion(pred_unit, gold_unit) -> Factor | None        # None: not the same kind of quantity

A unit is read from the end of an answer, in these forms:

* ``\\text{…}`` / ``\\mbox{…}`` / ``\\mathrm{…}`` groups, with ``^2``, ``/`` and ``\\cdot`` between them
  (``15\\mbox{ cm}^2``, ``3\\,\\text{m}/\\text{s}``);
* ``%`` / ``\\%``; ``^\\circ`` / ``°`` / ``\\degree`` (``°C`` and ``°F`` are temperatures, compared by name);
* a leading currency sign: ``\\$`` (dollars), ``€``, ``£``, ``¥``;
* plain words after a plain number (``5 cm``, ``60 miles per hour``, ``12cm``), only when every word is a
  unit of the table (``5 apples`` is left alone: it could be prose).

Units of the table (length, area, volume, mass, time, angle, percent, US money and products / quotients of
them: ``km/h``, ``square feet``, ``m/s^2``) convert exactly: a scale (a fraction) times a power of pi (degrees
to radians). Any other unit is compared by its name, plurals folded (``apples`` = ``apple`` ≠ ``pears``).
Radians are a unit only when written (``\\frac{\\pi}{2}\\text{ rad}``); a bare ``\\frac{\\pi}{2}`` has none.

Why not a library: ``pint`` is not a dependency and ``sympy.physics.units`` has the factors but none of the
names a model writes (plurals, ``sq ft``, ``mph``, units inside LaTeX text groups); the table is small and
every factor in it is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

UNIT_TAIL_CHARS = 200  # a unit is at most this long; only the end of an answer is scanned (bounded regex work)

# name -> (dimensions as (base, exponent) pairs, scale in the base unit, power of pi in the scale)
_L, _M, _T, _A = (("length", 1),), (("mass", 1),), (("time", 1),), (("angle", 1),)
_AREA, _VOLUME = (("length", 2),), (("length", 3),)
_GALLON = Fraction(3785411784, 10**12)  # US gallon in m^3, exact by definition
_TABLE: dict[str, tuple[tuple, Fraction, int]] = {}


def _add(names: str, dims: tuple, scale, pi: int = 0) -> None:
    for name in names.split():
        _TABLE[name] = (dims, Fraction(scale), pi)


_add("m meter metre", _L, 1)
_add("mm millimeter millimetre", _L, Fraction(1, 1000))
_add("cm centimeter centimetre", _L, Fraction(1, 100))
_add("dm decimeter decimetre", _L, Fraction(1, 10))
_add("km kilometer kilometre", _L, 1000)
_add("in inch", _L, Fraction(254, 10000))
_add("ft foot feet", _L, Fraction(3048, 10000))
_add("yd yard", _L, Fraction(9144, 10000))
_add("mi mile", _L, Fraction(1609344, 1000))
_add("unit", (("unit", 1),), 1)  # MATH's "square units": its own length, equal to no other
_add("ha hectare", _AREA, 10_000)
_add("acre", _AREA, Fraction(316160658, 78125))  # 4046.8564224 m^2
_add("l liter litre", _VOLUME, Fraction(1, 1000))
_add("ml milliliter millilitre cc", _VOLUME, Fraction(1, 10**6))
_add("gal gallon", _VOLUME, _GALLON)
_add("qt quart", _VOLUME, _GALLON / 4)
_add("pt pint", _VOLUME, _GALLON / 8)
_add("cup", _VOLUME, _GALLON / 16)
_add("tbsp tablespoon", _VOLUME, _GALLON / 256)
_add("tsp teaspoon", _VOLUME, _GALLON / 768)
_add("g gram gramme", _M, 1)
_add("mg milligram", _M, Fraction(1, 1000))
_add("kg kilogram kilo", _M, 1000)
_add("tonne", _M, 10**6)
_add("lb lbs pound", _M, Fraction(45359237, 100000))
_add("oz ounce", _M, Fraction(45359237, 1600000))
_add("s sec second", _T, 1)
_add("ms millisecond", _T, Fraction(1, 1000))
_add("min minute", _T, 60)
_add("h hr hour", _T, 3600)
_add("day", _T, 86_400)
_add("wk week", _T, 604_800)
_add("month mo", (("calendar", 1),), 1)  # months and years do not convert to days exactly
_add("year yr", (("calendar", 1),), 12)
_add("decade", (("calendar", 1),), 120)
_add("century", (("calendar", 1),), 1200)
_add("rad radian", _A, 1)
_add("deg degree °", _A, Fraction(1, 180), 1)
_add("percent pct %", (("percent", 1),), 1)
_add("dollar usd $", (("usd", 1),), 1)
_add("cent ¢", (("usd", 1),), Fraction(1, 100))
# compound abbreviations, spelled out
_COMPOUND = {"mph": "mi/h", "kph": "km/h", "kmh": "km/h", "fps": "ft/s", "rpm": "revolution/min"}
# words that join units ("miles per hour", "square feet", "feet squared")
_POWER_BEFORE = {"square": 2, "sq": 2, "cubic": 3, "cu": 3}
_POWER_AFTER = {"squared": 2, "cubed": 3}
_CURRENCY_SIGNS = {"\\$": "$", "$": "$", "€": "euro", "\\euro": "euro", "£": "pound sterling", "\\pounds": "pound sterling",
                   "¥": "yen", "\\yen": "yen"}
# first words that make a text group prose, not a unit ("6 \text{ and } 8", "x \text{ if } ...")
_PROSE = {"and", "or", "if", "for", "is", "are", "the", "when", "where", "with", "so", "then", "since", "because",
          "otherwise", "of", "to", "at", "as", "which", "but", "not", "all", "any", "only"}
_BARE_EXCLUDED = {"in", "a", "at"}  # plain words too common in prose to read as a unit without \text

_TEXT_GROUP = (r"\\(?:text|mbox|mathrm|textrm|rm|textnormal|textbf|textit)\s*"
               r"\{(?P<word>(?:[^{}]|\{[^{}]{0,10}\}){1,60})\}")
_POWER = r"\^\s*(?:\{\s*(?P<pow>-?\d)\s*\}|(?P<pow1>\d))"
_TAIL_PIECE = re.compile(rf"(?:{_TEXT_GROUP}|{_POWER}|(?P<sep>/|\\cdot|\\[,;:! ]|~|\s+))\Z")
_PERCENT = re.compile(r"(?:\\%|%|\\text\{\s*%\s*\})\Z")
_DEGREE = re.compile(r"(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\^\s*\{?\s*o\s*\}?)(?:\s|\\[,;: ]|~)*"
                     r"(?:\\(?:text|mathrm|rm)\s*\{\s*(?P<scale>[CFK])\s*\}|(?P<bare>[CFK]))?\Z")
_LEADING_CURRENCY = re.compile(r"(?P<sign>-?)\s*(?P<cur>\\\$|\$|€|\\euro|£|\\pounds|¥|\\yen)\s*(?:\{\s*\}|\\!)?")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?")
_BARE_UNIT = re.compile(r"(?P<mag>[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:/\d+)?)(?P<sep>(?:\s|\\[,;: ]|~)*)"
                        r"(?P<unit>[A-Za-z°][A-Za-z ./^\d-]{0,40})")
_UNIT_LIKE = re.compile(r"[A-Za-z°%$¢€£¥][A-Za-z°.\s/^\d{}-]*")
_NUMERIC = re.compile(r"\d|\\pi")
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")
# left of a unit, these make the text something other than one value: more units, an inequality, a set
_NOT_ONE_VALUE = re.compile(r"\\(?:text|mbox|mathrm)|[<>]|\\(?:geq?|leq?|neq?|in|subset|subseteq|cup|cap|pm)(?![A-Za-z])")


@dataclass(frozen=True)
class Unit:
    name: str  # normalized spelling ("km/h", "cm^2", "apple"): how unknown units are compared
    dims: tuple | None  # sorted (base, exponent) pairs; None: not in the table
    scale: Fraction = Fraction(1)
    pi: int = 0  # the scale also has this power of pi (degrees)

    @property
    def percent(self) -> bool:
        return self.dims == (("percent", 1),)


@dataclass(frozen=True)
class Quantity:
    magnitude: str  # the number (LaTeX), unit removed
    unit: Unit


@dataclass(frozen=True)
class Factor:
    """pred magnitude * ratio * pi**pi = the same quantity in the gold's unit."""

    ratio: Fraction
    pi: int = 0

    @property
    def identity(self) -> bool:
        return self.ratio == 1 and self.pi == 0


def _singular(word: str) -> str:
    if word in _TABLE or word in _COMPOUND:
        return word
    for suffix, replacement in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) > len(suffix) + 1 and word[:-len(suffix)] + replacement in _TABLE:
            return word[:-len(suffix)] + replacement
    # unknown units: fold plurals the same way on both sides ("boxes" = "box", "apples" = "apple")
    if re.search(r"(?:[sxz]|ch|sh)es$", word) and len(word) > 4:
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def parse_unit(text: str) -> Unit:
    """The unit named by ``text`` (``km/h``, ``square feet``, ``cm^2``, ``miles per hour``, ``apples``)."""
    text = text.replace("²", "^2").replace("³", "^3").replace("\\cdot", " ").replace("·", " ").replace("*", " ")
    text = re.sub(r"\^\s*\{?\s*(-?\d)\s*\}?", r"^\1", text.lower())
    text = re.sub(r"\bper\b", "/", text)
    text = re.sub(r"(?<=[a-z])\.(?=\s|/|$)", "", text)  # "sq. ft." -> "sq ft"
    words: list[tuple[str, int]] = []  # (singular name, exponent with sign)
    sign, pending = 1, 0
    for piece in re.findall(r"/|[^\s/]+", text):
        if piece == "/":
            sign, pending = -1, 0
            continue
        word, _, power = piece.partition("^")
        exponent = int(power) if re.fullmatch(r"-?\d", power) else 1
        if word in _POWER_BEFORE:
            pending = _POWER_BEFORE[word]
            continue
        if word in _POWER_AFTER and words:
            name, previous = words[-1]
            words[-1] = (name, previous * _POWER_AFTER[word])
            continue
        word = _singular(word)
        if word in _COMPOUND:
            for k, part in enumerate(_COMPOUND[word].split("/")):
                words.append((part, sign * (1 if k == 0 else -1)))
            continue
        words.append((word, sign * exponent * (pending or 1)))
        pending = 0
    name = " ".join(w if e == 1 else f"{w}^{e}" for w, e in words)
    if not words or any(w not in _TABLE for w, _ in words):
        return Unit(name or text.strip(), None)
    dims: dict[str, int] = {}
    scale, pi = Fraction(1), 0
    for word, exponent in words:
        unit_dims, unit_scale, unit_pi = _TABLE[word]
        for base, power in unit_dims:
            dims[base] = dims.get(base, 0) + power * exponent
        scale *= unit_scale ** exponent
        pi += unit_pi * exponent
    return Unit(name, tuple(sorted((b, p) for b, p in dims.items() if p)), scale, pi)


def conversion(pred: Unit, gold: Unit) -> Factor | None:
    """How to express a ``pred`` magnitude in ``gold``'s unit; None when they measure different things."""
    if pred.dims is not None and gold.dims is not None:
        if pred.dims != gold.dims:
            return None
        return Factor(pred.scale / gold.scale, pred.pi - gold.pi)
    return Factor(Fraction(1)) if pred.name == gold.name else None


def _unwrap_text(text: str) -> str:
    """``\\text{5 cm}`` (the whole answer in one text group) -> ``5 cm``."""
    match = re.fullmatch(_TEXT_GROUP, text)
    return match.group("word").strip() if match and _NUMERIC.match(match.group("word").strip()) else text


def _magnitude(text: str) -> str | None:
    """The number left of a unit, or None when that is not one value (empty, a list, more units, prose)."""
    text = re.sub(r"(?:\\[,;:! ]|~|\s)+\Z", "", text).strip()
    if not text or not _NUMERIC.search(text) or text[-1] in "+-*/=,(^_" or _NOT_ONE_VALUE.search(text):
        return None
    if "," in text and not re.fullmatch(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text.replace("{,}", ",")):
        return None  # a list of values ("3, 4 cm") is not one quantity
    return text


def _tail_unit(text: str) -> tuple[str, str] | None:
    """``(rest, unit text)`` for trailing ``\\text{…}`` groups (with powers, ``/``, ``\\cdot``)."""
    head, tail = text[:-UNIT_TAIL_CHARS], text[-UNIT_TAIL_CHARS:]
    pieces, words = [], 0
    while tail:
        match = _TAIL_PIECE.search(tail)
        if not match:
            break
        if match.group("word") is not None:
            word = re.sub(r"~|\\[,;:! ]", " ", match.group("word")).strip()  # NuminaMath's \mathrm{~cm}
            if not _UNIT_LIKE.fullmatch(word) or len(word.split()) > 4 or word.split()[0].lower() in _PROSE:
                break
            if len(word) == 1 and word.lower() not in _TABLE:  # \mathrm{e}, \mathrm{i}, \mathrm{d}: symbols
                break
            pieces.append(" " + word + " ")
            words += 1
        elif match.group("pow") is not None or match.group("pow1") is not None:
            pieces.append("^" + (match.group("pow") or match.group("pow1")))
        else:
            pieces.append(" / " if match.group("sep") == "/" else " ")
        tail = tail[:match.start()]
    if not words:
        return None
    unit = re.sub(r"\s+", " ", "".join(reversed(pieces))).strip().strip("/").strip()
    unit = re.sub(r"\s+\^", "^", unit)
    return head + tail, unit


def split_unit(text: str) -> Quantity | None:
    """``Quantity(magnitude, unit)`` when ``text`` is one value with a unit, else None."""
    text = (text or "").replace("\\!", "").strip()
    delimiters = _MATH_DOLLAR.findall(text)
    if len(delimiters) != 1 or not text.startswith("$"):  # "$5$ cm": math delimiters; "$5": a price
        text = _MATH_DOLLAR.sub("", text).strip()
    text = _unwrap_text(text.rstrip(".").strip())
    currency = None
    lead = _LEADING_CURRENCY.match(text)
    if lead and _NUMERIC.match(text[lead.end():].lstrip()):
        currency = _CURRENCY_SIGNS[lead.group("cur")]
        text = lead.group("sign") + text[lead.end():].strip()
    suffix = _suffix_unit(text)
    if suffix is not None:
        rest, unit_text = suffix
        unit = parse_unit(unit_text)
        if currency is not None and unit.dims is None:  # "\$5 \text{ each}": the sign is the unit
            unit = parse_unit(currency)
        elif currency is not None and unit.dims != (("usd", 1),):  # "\$12 \text{ per hour}"
            unit = parse_unit(f"{currency} {unit_text}")
    elif currency is not None:
        rest, unit = text, parse_unit(currency)
    else:
        return None
    magnitude = _magnitude(rest)
    return Quantity(magnitude, unit) if magnitude is not None else None


def _suffix_unit(text: str) -> tuple[str, str] | None:
    """``(rest, unit text)`` for a unit at the end of ``text``."""
    percent = _PERCENT.search(text)
    if percent:
        return text[:percent.start()], "%"
    degree = _DEGREE.search(text)
    if degree:
        scale = degree.group("scale") or degree.group("bare")
        return text[:degree.start()], ("°" + scale if scale else "°")
    tail = _tail_unit(text)
    if tail:
        return tail
    bare = _BARE_UNIT.fullmatch(text) if len(text) <= 80 else None
    if bare:
        unit = parse_unit(bare.group("unit"))
        words = bare.group("unit").lower().split()
        glued = not bare.group("sep")
        if unit.dims is not None and not (set(words) & _BARE_EXCLUDED) and not (glued and len(unit.name) < 2):
            return bare.group("mag"), bare.group("unit")
    return None
