"""``python -m search_spaces``: the reference networks next to the paper's Table 3."""

from __future__ import annotations

from .cost import count_madds, count_params
from .references import TABLE3, reference


def main() -> None:
    print(f"{'network':16s} {'MAdds (ours)':>13s} {'paper':>7s} {'diff':>7s} {'params (ours)':>14s} {'paper':>6s}")
    for (name, width), row in TABLE3.items():
        spec = reference(name, width)
        madds, params = count_madds(spec) / 1e6, count_params(spec)
        print(f"{row['label']:16s} {madds:12.1f}M {row['madds_m']:6.1f}M {100 * (madds / row['madds_m'] - 1):+6.1f}% "
              f"{params:14,d} {row['params_m']:5.1f}M")


if __name__ == "__main__":
    main()
