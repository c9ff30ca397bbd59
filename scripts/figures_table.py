"""Print docs/figures.md's "Every figure" table from the registry (sweep/figures.py), so the docs
never drift from what `sweep figures` runs:  python scripts/figures_table.py"""
from sweep.figures import FIGURES


def main() -> None:
    print("| fig | what it shows | experiment(s) | paper settings | quick reductions | est. quick CPU min |")
    print("|---|---|---|---|---|---|")
    for f in FIGURES.values():
        q = f.scale("quick")
        minutes = "–" if q.minutes is None else f"{q.minutes:g}"
        print(f"| {f.name} | {f.description} | {', '.join(f.experiments)} | {f.paper} | {q.reductions} | {minutes} |")


if __name__ == "__main__":
    main()
