"""The ALMA-R rule on hand-written rows in the released data's schema: ties at the top and bottom, all-equal rows,
identical texts, human-judged (Delta) rows, required_directions, each score field, and bad rows."""

import pytest
from alma_fixture import EXPECTED_ROW0, FIELDS, ROWS, row

from cpo.pairs.alma import alma_pairs
from cpo.rows import RowError


@pytest.mark.parametrize("score_field", FIELDS)
def test_the_rule_gives_exactly_the_hand_derived_pairs(score_field):
    pairs, report = alma_pairs(ROWS, ["de-en", "en-de"], score_field=score_field, languages={"de", "en", "cs"})
    got = [(p.row, p.direction, p.chosen_system, p.rejected_system, p.chosen, p.rejected) for p in pairs]
    c, r = EXPECTED_ROW0[score_field]
    assert got == [
        (0, "de-en", c, r, c, r),
        (0, "en-de", "gpt4", "ref", "D-gpt4", "D-ref"),
        (1, "de-en", "ref", "alma", "ref", "alma"),
        (2, "de-en", "gpt4", "ref", "gpt4", "ref"),
        (5, "de-en", "gpt4", "alma", "gpt4", "alma"),
        (6, "de-en", "alma", "gpt4", "alma", "gpt4"),
        (8, "en-de", "alma", "ref", "D-alma", "D-ref"),
    ]
    assert all(p.source == ("D-ref" if p.direction == "de-en" else "ref") for p in pairs)
    assert [p.human for p in pairs] == [False, False, False, False, True, True, False]
    assert report.rows == 9 and report.pairs == {"de-en": 5, "en-de": 2} and report.human_judged == 2
    assert report.identical_dropped == 2  # rows 3 and 4
    assert report.reference_chosen == (2 if score_field == "kiwi" else 1)
    assert report.reference_rejected == (3 if score_field == "kiwi" else 4)
    # top: rows 1 and 3; bottom: rows 2 and 3, and row 0 under kiwi_xcomet (reference and ALMA at 0.5)
    assert (report.top_ties, report.bottom_ties) == (2, 3 if score_field == "kiwi_xcomet" else 2)
    text = "\n".join(report.lines())
    assert "read 9 rows" in text and "dropped: 2" in text and "would have trained on them" in text


def test_a_missing_score_is_refused_naming_row_and_field_or_counted_when_skipping():
    bad = row(required="de-en")
    del bad["translation"]["gpt4_en_kiwi"]
    with pytest.raises(RowError, match=r"Row 1, field 'translation.gpt4_en_kiwi': is missing"):
        alma_pairs([ROWS[1], bad], ["de-en"], score_field="kiwi")
    pairs, report = alma_pairs([ROWS[1], bad], ["de-en"], score_field="kiwi", invalid_rows="skip")
    assert len(pairs) == 1 and report.invalid == {"field translation.gpt4_en_kiwi": 1}
    assert "invalid rows skipped: 1" in "\n".join(report.lines())
    # the human-judged row needs no score
    human = row(required="de-en", delta=1)
    del human["translation"]["gpt4_en_kiwi"]
    assert len(alma_pairs([human], ["de-en"], score_field="kiwi")[0]) == 1


def test_unknown_languages_and_directions_no_row_has_are_refused():
    with pytest.raises(RowError, match=r"Row 0, field 'translation.language_pair': has the unknown language code "
                                       r"'xx'.*use one of cs, de, en"):
        alma_pairs([row(pair="xx-en")], ["xx-en"], languages={"cs", "de", "en"})
    with pytest.raises(ValueError, match=r"No row has the direction\(s\) zh-en; the data has cs-en, de-en, en-cs, "
                                         r"en-de"):
        alma_pairs(ROWS, ["de-en", "zh-en"])
    with pytest.raises(ValueError, match="Unknown score field 'comet'"):
        alma_pairs(ROWS, ["de-en"], score_field="comet")


def test_x_alma_rows_are_read_with_reject_as_the_rejected_side():
    rows = [{"source": "Hallo.", "chosen": "Hello.", "reject": "Hallo.", "directions": "de-en"},
            {"source": "Hi.", "chosen": "Hallo.", "reject": "Moin.", "directions": "en-de"},
            {"source": "Ahoj.", "chosen": "Hi.", "reject": "Hi.", "directions": "cs-en"}]
    pairs, report = alma_pairs(rows, ["de-en", "cs-en"])
    assert [(p.source, p.chosen, p.rejected, p.direction) for p in pairs] == [("Hallo.", "Hello.", "Hallo.", "de-en")]
    assert report.schema == "x-alma" and report.identical_dropped == 1 and report.pairs == {"de-en": 1}


def test_rows_of_neither_schema_are_refused():
    with pytest.raises(RowError, match="field 'translation': is missing"):
        alma_pairs([{"prompt": "a", "chosen": "b", "rejected": "c"}], ["de-en"])
