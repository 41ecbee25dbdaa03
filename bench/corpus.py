"""An OCDS-like corpus for the codec benchmarks: one crawl directory of release and record packages.

    .venv/bin/python bench/corpus.py                    # ~250 MB into bench/out/corpus/ (kept; rebuilt if asked)
    .venv/bin/python bench/corpus.py --size 50 --seed 7 --force

Four made-up publishers, each with its own habits, the way real crawls differ: an indented (``indent=2``)
Portuguese-language publisher of release packages dated to the day (40% of the bytes), a compact Spanish-language
publisher of record packages (linked releases and a compiled release each, hex ids), a compact Spanish-language
publisher of release packages with long item lists and whole-number amounts, and a compact English-language
publisher with UUIDs. Values vary as real ones do: ocids and ids (numbers, hex, UUIDs), dates and times, amounts, party
names, addresses and item descriptions drawn from word lists with a few common words and many rare ones. Package
sizes run from 8 KB to about 1 MB (log-uniform). Files sit in 3-hex-digit folders, as Kingfisher Collect writes
them since 2023, named after the publisher so that bench/codecs.py can measure the indented and compact ones
apart (``manifest.json`` beside the crawl lists each file's publisher and layout).

Deterministic: the same seed and size give the same bytes. Measured ratios are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "corpus"
SOURCE, VERSION = "corpus", "20240101_000000"
MB = 1_000_000

# Word lists: a handful of common words and a long tail, as in real descriptions and names.
PT = (
    "aquisição de serviços fornecimento material escolar limpeza manutenção equipamentos informáticos obras "
    "reparação estrada municipal escola básica centro saúde viaturas combustível refeições alimentação "
    "consultoria jurídica seguros energia elétrica iluminação pública contrato público empreitada requalificação "
    "edifício pavilhão desportivo rede águas residuais saneamento software licenças impressão papel mobiliário "
    "vigilância segurança transporte alunos medicamentos hospitalar dispositivos médicos reagentes laboratório "
    "formação profissional publicidade comunicação eventos cultura jardins espaços verdes recolha resíduos "
    "urbanos sinalização rodoviária pavimentação betuminoso calçada parque infantil biblioteca arquivo digital"
).split()
ES = (
    "adquisición de servicios suministro material oficina limpieza mantenimiento equipo cómputo obra pública "
    "rehabilitación carretera escuela primaria hospital general vehículos combustible alimentos despensa "
    "consultoría legal seguros energía eléctrica alumbrado público contrato licitación construcción edificio "
    "deportivo red agua potable drenaje software licencias impresión papelería mobiliario vigilancia seguridad "
    "transporte medicamentos dispositivos médicos reactivos laboratorio capacitación publicidad difusión eventos "
    "cultura parques jardines recolección residuos sólidos señalización vial pavimentación banquetas uniformes "
    "herramientas refacciones arrendamiento inmuebles fumigación mensajería paquetería telefonía internet"
).split()
EN = (
    "provision of services supply office materials cleaning maintenance computer equipment construction works "
    "repair highway primary school general hospital vehicles fuel catering food consultancy legal insurance "
    "electricity street lighting framework agreement tender building sports centre water network drainage "
    "software licences printing stationery furniture security guarding transport medicines medical devices "
    "reagents laboratory training advertising communications events culture parks gardens waste collection "
    "recycling road signs resurfacing uniforms tools spare parts lease property pest control courier telephony"
).split()
SURNAMES = (
    "silva santos ferreira pereira oliveira costa rodrigues martins jesus sousa fernandes gonçalves gomes lopes "
    "marques alves almeida ribeiro pinto carvalho teixeira moreira correia mendes nunes soares vieira monteiro "
    "cardoso rocha raposo neves coelho cruz cunha pires ramos reis simões antunes matos fonseca garcía hernández "
    "lópez martínez gonzález pérez sánchez ramírez flores gómez díaz vázquez morales jiménez reyes ortiz castillo "
    "benítez acosta giménez villalba duarte smith jones taylor brown williams wilson johnson davies robinson wright"
).split()
COMPANY = ["Lda", "S.A.", "S.A. de C.V.", "S.R.L.", "Ltd", "Unipessoal Lda", "E.I.R.L.", "plc", "& Filhos"]
TRADES = ["Construções", "Serviços", "Comercial", "Tecnologia", "Distribuidora", "Consultores", "Engenharia"]
UNITS = ["unidad", "pieza", "servicio", "kilogramo", "litro", "caja", "hora", "each", "lote", "metro"]
STATUSES = ["active", "complete", "cancelled", "unsuccessful", "planned"]
METHODS = [
    ("open", "Licitación pública"), ("selective", "Invitación restringida"), ("limited", "Adjudicación directa")
]  # fmt: skip
COUNTRIES = {"PT": "Portugal", "MX": "México", "PY": "Paraguay", "GB": "United Kingdom"}
CATEGORIES = ["goods", "works", "services"]


SYLLABLES = "ba be ca co da de do fa fe ga go ja la le li lo ma me mi mo na ne no pa pe po ra re ri ro sa se so ta te ti to va ve vi za".split()  # noqa: E501


def long_tail(words: list[str], n: int, seed: int) -> list[str]:
    """``words`` then ``n`` made-up rarer words (names of places, firms, products: a real corpus's long tail)."""
    rng = random.Random(seed)
    return words + ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def zipf_choice(rng: random.Random, words: list[str], skew: float = 2.4) -> str:
    """A word, the first ones far more often than the last (real text is like that)."""
    return words[min(int(len(words) * rng.random() ** skew), len(words) - 1)]


def sentence(rng: random.Random, words: list[str], low: int, high: int) -> str:
    text = " ".join(zipf_choice(rng, words) for _ in range(rng.randint(low, high)))
    return text[0].upper() + text[1:]


def date(rng: random.Random, times: bool = True) -> str:
    day = f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if not times:
        return day + "T00:00:00Z"
    return f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}{rng.choice(['Z', '-06:00', '+01:00'])}"  # noqa: E501


def amount(rng: random.Random, cents: bool) -> float | int:
    value = round(10 ** rng.uniform(2.5, 7.5), 2)
    return value if cents else int(value)


def uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


class Publisher:
    """One publisher's habits: language, ids, currency, layout, package type, and its own pool of parties."""

    def __init__(self, name, rng, words, prefix, currency, indent, records, cents, id_style, items, parties, tail):
        self.name, self.rng, self.words, self.prefix = name, rng, words, prefix
        self.currency, self.indent, self.records, self.cents = currency, indent, records, cents
        self.id_style, self.items = id_style, items
        self.times = not indent  # the indented publisher dates to the day, as some portals do
        self.country = {"portugal": "PT", "mexico": "MX", "paraguay": "PY", "uk": "GB"}[name]
        self.words = long_tail(words, tail, seed=len(name))
        self.surnames = long_tail(SURNAMES, tail, seed=len(name) + 1)
        self.parties = [self.party(i) for i in range(parties)]

    def ident(self) -> str:
        rng = self.rng
        if self.id_style == "uuid":
            return uuid(rng)
        if self.id_style == "hex":
            return f"{rng.getrandbits(48):012x}"
        return str(rng.randint(1_000_000, 99_999_999))

    def party(self, i: int) -> dict:
        rng = self.rng
        owner = f"{zipf_choice(rng, self.surnames).title()} {zipf_choice(rng, self.surnames).title()}"
        name = f"{rng.choice(TRADES)} {owner} {rng.choice(COMPANY)}"
        if i % 5 == 0:
            name = f"Município de {zipf_choice(rng, self.surnames).title()}"
        street = f"{rng.choice(['Rua', 'Avenida', 'Calle', 'Road'])} {zipf_choice(rng, self.surnames).title()}"
        return {
            "id": f"{self.country}-{rng.randint(100_000_000, 999_999_999)}",
            "name": name,
            "identifier": {"scheme": f"{self.country}-NIF", "id": str(rng.randint(100_000_000, 999_999_999))},
            "address": {
                "streetAddress": f"{street}, {rng.randint(1, 999)}",
                "locality": zipf_choice(rng, self.surnames).title(),
                "postalCode": f"{rng.randint(1000, 9999)}-{rng.randint(100, 999)}",
                "countryName": COUNTRIES[self.country],
            },
            "contactPoint": {
                "name": owner,
                "email": f"{owner.split()[0].lower()}.{rng.randint(1, 99)}@example.{self.country.lower()}",
                "telephone": f"+{rng.randint(10, 599)} {rng.randint(100, 999)} {rng.randint(100_000, 999_999)}",
            },
            "roles": [rng.choice(["buyer", "procuringEntity", "supplier", "tenderer"])],
        }

    def item(self, i: int) -> dict:
        rng = self.rng
        return {
            "id": str(i + 1),
            "description": sentence(rng, self.words, 3, 14),
            "classification": {"scheme": "CPV", "id": f"{rng.randint(10_000_000, 99_999_999)}-{rng.randint(0, 9)}"},
            "quantity": rng.randint(1, 5_000),
            "unit": {
                "name": rng.choice(UNITS),
                "value": {"amount": amount(self.rng, self.cents), "currency": self.currency},
            },
        }

    def release(self, ocid: str, tag: str) -> dict:
        rng = self.rng
        buyer, supplier = rng.choice(self.parties), rng.choice(self.parties)
        value = {"amount": amount(rng, self.cents), "currency": self.currency}
        method, details = rng.choice(METHODS)
        release = {
            "ocid": ocid,
            "id": f"{ocid}-{tag}-{self.ident()}",
            "date": date(rng, self.times),
            "tag": [tag],
            "initiationType": "tender",
            "parties": [buyer, supplier],
            "buyer": {"id": buyer["id"], "name": buyer["name"]},
            "tender": {
                "id": self.ident(),
                "title": sentence(rng, self.words, 4, 12),
                "description": sentence(rng, self.words, 8, 40),
                "status": rng.choice(STATUSES),
                "procurementMethod": method,
                "procurementMethodDetails": details,
                "mainProcurementCategory": rng.choice(CATEGORIES),
                "value": value,
                "tenderPeriod": {"startDate": date(rng, self.times), "endDate": date(rng, self.times)},
                "items": [self.item(i) for i in range(rng.randint(*self.items))],
                "numberOfTenderers": rng.randint(1, 12),
            },
        }
        if tag in ("award", "contract"):
            award_id = self.ident()
            release["awards"] = [
                {
                    "id": award_id,
                    "date": date(rng, self.times),
                    "status": "active",
                    "value": {"amount": amount(rng, self.cents), "currency": self.currency},
                    "suppliers": [{"id": supplier["id"], "name": supplier["name"]}],
                    "items": release["tender"]["items"][: rng.randint(1, 3)],
                }
            ]
            if tag == "contract":
                release["contracts"] = [
                    {
                        "id": self.ident(),
                        "awardID": award_id,
                        "title": sentence(rng, self.words, 3, 10),
                        "status": rng.choice(["active", "terminated"]),
                        "period": {"startDate": date(rng, False), "endDate": date(rng, False)},
                        "value": {"amount": amount(rng, self.cents), "currency": self.currency},
                        "dateSigned": date(rng, self.times),
                        "implementation": {
                            "transactions": [
                                {
                                    "id": self.ident(),
                                    "date": date(rng),
                                    "value": {"amount": amount(rng, self.cents), "currency": self.currency},
                                }
                                for _ in range(rng.randint(0, 4))
                            ]
                        },
                    }
                ]
        return release

    def ocid(self) -> str:
        return f"{self.prefix}-{self.ident()}"

    def package(self, target: int, page: int) -> bytes:
        """A release or record package of about ``target`` bytes."""
        rng, size, entries = self.rng, 400, []
        while size < target:
            ocid = self.ocid()
            if self.records:
                tags = ("tender", "award", "contract")[: rng.randint(1, 3)]
                compiled = dict(self.release(ocid, tags[-1]), id=f"{ocid}-compiled", tag=["compiled"])
                linked = [
                    {"url": f"https://{self.name}.example/api/releases/{self.ident()}", "date": date(rng), "tag": [t]}
                    for t in tags
                ]
                entry = {"ocid": ocid, "releases": linked, "compiledRelease": compiled}
            else:
                entry = self.release(ocid, rng.choice(["tender", "award", "contract"]))
            size += len(json.dumps(entry, ensure_ascii=False)) * (13 if self.indent else 10) // 10
            entries.append(entry)
        package = {
            "uri": f"https://{self.name}.example/api/packages?page={page}",
            "version": "1.1",
            "publishedDate": date(rng),
            "publisher": {"name": f"{self.name.title()} procurement portal", "scheme": "OCDS"},
            "license": "https://creativecommons.org/licenses/by/4.0/",
            "publicationPolicy": f"https://{self.name}.example/policy",
            ("records" if self.records else "releases"): entries,
        }
        return json.dumps(package, ensure_ascii=False, indent=2 if self.indent else None).encode()


def publishers(seed: int) -> list[tuple[Publisher, float]]:
    """The publishers and each one's share of the corpus's bytes."""

    def rng(n: int) -> random.Random:
        return random.Random(seed * 1000 + n)

    # name, its random numbers, words, ocid prefix, currency, indented, record packages, amounts in cents, ids,
    # items per tender, parties it deals with, rare words: then its share of the corpus's bytes
    return [
        (Publisher("portugal", rng(1), PT, "ocds-a9k3zx", "EUR", True, False, True, "number", (1, 3), 100, 100), 0.4),
        (Publisher("mexico", rng(2), ES, "ocds-87sd3t", "MXN", False, True, True, "hex", (1, 4), 400, 700), 0.25),
        (
            Publisher("paraguay", rng(3), ES, "ocds-03ad3f", "PYG", False, False, False, "number", (2, 10), 500, 700),
            0.2,
        ),
        (Publisher("uk", rng(4), EN, "ocds-b5fd17", "GBP", False, False, True, "uuid", (1, 3), 500, 700), 0.15),
    ]


def build(directory: Path, size: int = 250 * MB, seed: int = 1) -> list[dict]:
    """Write the corpus into ``directory`` (a crawl directory); return the manifest (one dict per file)."""
    manifest = []
    for publisher, share in publishers(seed):
        budget, page = int(size * share), 0
        sizes = random.Random(seed * 1000 + 99 + page)
        while budget > 0:
            target = min(int(math.exp(sizes.uniform(math.log(8_000), math.log(1_000_000)))), max(budget, 8_000))
            body = publisher.package(target, page)
            name = f"{publisher.name}-{page:05d}.json"
            folder = hashlib.sha1(name.encode()).hexdigest()[:3].upper()  # noqa: S324 - a folder name, not security
            path = directory / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            manifest.append(
                {"path": f"{folder}/{name}", "publisher": publisher.name, "indented": publisher.indent,
                 "bytes": len(body)}
            )  # fmt: skip
            budget -= len(body)
            page += 1
    return manifest


def ensure(size: int = 250 * MB, seed: int = 1, force: bool = False, out: Path = OUT) -> tuple[Path, str, str]:
    """The corpus under ``out`` (``out/data/corpus/20240101_000000``), built unless already there with these
    parameters; returns (data directory, source id, data version), as bench/run.py's datasets do."""
    data = out / "data"
    crawl = data / SOURCE / VERSION
    stamp = out / "complete"
    wanted = json.dumps({"size": size, "seed": seed})
    if force or not stamp.exists() or stamp.read_text() != wanted:
        shutil.rmtree(out, ignore_errors=True)
        crawl.mkdir(parents=True)
        print(f"building the OCDS-like corpus ({size / MB:.0f} MB, seed {seed}) under {crawl} ...", flush=True)
        manifest = build(crawl, size, seed)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        stamp.write_text(wanted)
    log = out / "logs" / SOURCE / "job.log"  # the crawl's log, for bench/run.py's archive step
    if not log.exists():
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("log\n")
    return data, SOURCE, VERSION


def manifest(out: Path = OUT) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=250, help="megabytes (10^6 bytes) of JSON; default 250")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="rebuild even if the corpus is there")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to build it (default {OUT})")
    args = parser.parse_args()
    if args.size < 1:
        parser.error(f"--size must be at least 1 (megabyte), not {args.size}")
    data, source, version = ensure(args.size * MB, args.seed, args.force, args.out)
    files = manifest(args.out)
    total = sum(f["bytes"] for f in files)
    print(
        f"{data / source / version}: {len(files)} files, {total / MB:.0f} MB, "
        f"{min(f['bytes'] for f in files) / 1000:.0f} KB to {max(f['bytes'] for f in files) / 1000:.0f} KB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
