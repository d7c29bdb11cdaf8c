"""The pending-labels queue file alone (no QGIS, no daemon): written before anything is
sent, read back by a new instance, batches, undo before and after delivery, and a
damaged file kept aside instead of overwritten."""

import importlib.util
import json
import os
import tempfile
import unittest

# review/queue.py loaded alone (no Qt, no package import), under a name of its own.
_spec = importlib.util.spec_from_file_location(
    "nexttile_review_queue", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nexttile", "review", "queue.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
PendingQueue = _module.PendingQueue

URL = "http://127.0.0.1:7878"
POINT = {"type": "Point", "coordinates": [-75.4, 37.9]}


class QueueTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "nexttile", "pending_labels.json")

    def tearDown(self):
        self.dir.cleanup()

    def test_labels_are_on_disk_before_they_are_sent(self):
        q = PendingQueue(self.path)
        for n in range(7):
            q.add_label(URL, 1, f"r0_c{n}", "Forest", POINT)
            with open(self.path, encoding="utf-8") as f:
                self.assertEqual(len(json.load(f)["pending"]), n + 1)
        again = PendingQueue(self.path)
        self.assertEqual([o["tile_id"] for o in again.pending(URL, 1)], [f"r0_c{n}" for n in range(7)])
        batch = again.next_batch(URL, 5)
        self.assertEqual(len(batch), 5)
        again.done(batch, [11, 12, 13, 14, 15])
        self.assertEqual(len(PendingQueue(self.path).pending(URL)), 2)
        self.assertEqual(PendingQueue(self.path).label_id(URL, 1, "r0_c4"), 15)
        self.assertEqual(again.next_batch("http://elsewhere:1", 5), [])

    def test_undo_drops_a_queued_label_and_withdraws_a_stored_one(self):
        q = PendingQueue(self.path)
        q.add_label(URL, 1, "a", "Forest", POINT)
        q.add_label(URL, 1, "b", "River", POINT)
        self.assertEqual(q.withdraw(URL, 1, "b"), "dropped")
        self.assertEqual([o["tile_id"] for o in q.pending(URL)], ["a"])
        q.done(q.next_batch(URL, 5), [7])
        self.assertEqual(q.withdraw(URL, 1, "a"), "delete")
        (op,) = q.next_batch(URL, 5)
        self.assertEqual((op["op"], q.label_id(URL, 1, "a")), ("delete", 7))
        q.done([op])
        self.assertIsNone(q.label_id(URL, 1, "a"))
        self.assertIsNone(q.withdraw(URL, 1, "never-answered"))
        # A label being sent is not dropped: a delete follows it.
        q.add_label(URL, 1, "c", "Forest", POINT)
        in_flight = {o["key"] for o in q.next_batch(URL, 5)}
        self.assertEqual(q.withdraw(URL, 1, "c", in_flight), "delete")
        self.assertEqual([o["op"] for o in q.pending(URL)], ["label", "delete"])

    def test_a_damaged_file_is_kept_aside(self):
        os.makedirs(os.path.dirname(self.path))
        with open(self.path, "w", encoding="utf-8") as f:
            f.write("{not json")
        with self.assertRaises(ValueError) as e:
            PendingQueue(self.path)
        self.assertIn(".unreadable", str(e.exception))
        self.assertTrue(os.path.exists(self.path + ".unreadable"))
        self.assertEqual(PendingQueue(self.path).pending(), [])


if __name__ == "__main__":
    unittest.main()
