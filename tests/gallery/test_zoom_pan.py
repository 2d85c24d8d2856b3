"""ZoomPan, the arithmetic behind the wipe and difference views: fit, zoom about a point, pan within limits."""

import pytest

from app.ui.canvas.zoom_pan import MAX_ZOOM, MIN_ZOOM, ZoomPan


def view(image=(1000, 500), size=(400, 400)) -> ZoomPan:
    z = ZoomPan(*image)
    z.set_view_size(*size)
    return z


def test_fit_centres_the_whole_image_and_follows_resizes():
    z = view()
    assert z.zoom == pytest.approx(0.4) and z.fitted and not z.pannable
    r = z.image_rect()
    assert (r.x, r.y, r.width, r.height) == pytest.approx((0, 100, 400, 200))
    z.set_view_size(800, 300)  # still fitted: refits
    assert z.zoom == pytest.approx(0.6)
    assert z.image_rect().x == pytest.approx(100)


def test_zoom_about_a_point_keeps_that_image_point_under_it():
    z = view()
    before = z.to_image(300, 200)
    z.zoom_about(2.5, 300, 200)
    assert z.zoom == pytest.approx(1.0) and not z.fitted and z.pannable
    assert z.to_image(300, 200) == pytest.approx(before)
    before = z.to_image(150, 220)
    z.zoom_about(4.0, 150, 220)
    assert z.zoom == pytest.approx(4.0) and z.to_image(150, 220) == pytest.approx(before)


def test_zooming_at_an_edge_is_clamped_so_no_gap_opens():
    z = view()
    z.set_zoom(1.0)
    z.pan_by(10_000, 0)  # the image's left edge at the view's
    z.zoom_about(2.0, 0, 200)
    assert z.image_rect().x == pytest.approx(0)
    z.zoom_about(0.6, 399, 200)  # held at x=399 the left edge would come away from the view's: clamped
    r = z.image_rect()
    assert r.x == pytest.approx(0) and r.width == pytest.approx(1200)
    z.zoom_about(0.001, 200, 200)  # far below the fit: centred again, zoom at its lower limit
    assert z.zoom == MIN_ZOOM and (z.centre_x, z.centre_y) == (0.5, 0.5)
    z.zoom_about(1e9, 200, 200)
    assert z.zoom == MAX_ZOOM


def test_pan_moves_the_image_with_the_drag_and_stops_at_the_edges():
    z = view()
    z.set_zoom(1.0)  # 1000 x 500 image in a 400 x 400 view
    start = z.image_rect()
    z.pan_by(-50, -20)
    r = z.image_rect()
    assert (r.x, r.y) == pytest.approx((start.x - 50, start.y - 20))
    z.pan_by(-10_000, -10_000)  # as far as it goes: the image's bottom-right corner meets the view's
    r = z.image_rect()
    assert (r.x + r.width, r.y + r.height) == pytest.approx((400, 400))
    z.pan_by(10_000, 10_000)
    assert (z.image_rect().x, z.image_rect().y) == pytest.approx((0, 0))


def test_an_image_smaller_than_the_view_stays_centred_on_that_axis():
    z = view(image=(1000, 100))
    z.set_zoom(1.0)  # 1000 wide (pannable), 100 tall (fits)
    z.pan_by(-30, 80)
    assert z.centre_y == 0.5 and z.image_rect().y == pytest.approx(150)
    assert z.centre_x > 0.5


def test_a_view_from_elsewhere_is_applied_within_limits():
    z = view()
    z.set_view(2.0, 0.99, 0.0)  # another view's centre, beyond what this smaller view can show
    assert z.zoom == 2.0 and not z.fitted
    r = z.image_rect()
    assert r.x + r.width == pytest.approx(400) and r.y == pytest.approx(0)
    z.set_view_size(600, 600)  # not fitted: a resize keeps the zoom and clamps again
    assert z.zoom == 2.0 and z.image_rect().x + z.image_rect().width == pytest.approx(600)
    z.fit()
    assert z.fitted and z.zoom == pytest.approx(0.6)
