"""Factory-line defect watch: count the parts that cross an inspection line, compare each
one with a golden reference of its shape, give it one verdict (PASS / DEFECT) and read its
serial label.

One concept per module:

- watch.py         DefectWatch: crossing -> crop -> judge -> events, counters (the observer)
- records.py       PASS / DEFECT / UNKNOWN, the Verdict and Crossing records
- crops.py         a counted part's crop (PartCrop) and its verdict snapshot
- registration.py  phase-correlation registration, Hann window, blur, dHash of a grey image
- references.py    a golden Reference: learned from alike parts or read from a file; compare()
- shapes.py        ShapeLibrary: which reference a part belongs to; the learning pool
- text_lines.py    text lines on a part (the serial label; masked in references)
- serials.py       SerialReader: the best text line through Tesseract, normalised
- evaluation.py    ConveyorEvaluator: figures against ground truth (process --json, bench)
"""
from events.defects.evaluation import ConveyorEvaluator
from events.defects.records import DEFECT, PASS, UNKNOWN, Crossing, Verdict
from events.defects.references import Reference
from events.defects.registration import dhash_gray, register
from events.defects.text_lines import find_text_lines
from events.defects.watch import DefectWatch

__all__ = ["DefectWatch", "Verdict", "Crossing", "Reference", "ConveyorEvaluator",
           "find_text_lines", "dhash_gray", "register", "PASS", "DEFECT", "UNKNOWN"]
