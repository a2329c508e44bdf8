package main

import (
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	blue   = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	orange = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	grey   = color.RGBA{R: 0x88, G: 0x88, B: 0x88, A: 0xff}
	green  = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

// plotCurves draws the growth curves, two rows of three panels: the
// synchronizer's cold apply against its floor, its no-op pass, its peak
// RSS; its cold/floor ratio, the automator's pass against its floor, and
// the automator's peak RSS. Dashed grey lines are the targets.
func plotCurves(path string, sync, auto []point) error {
	xs := func(ps []point, f func(point) float64) plotter.XYs {
		out := make(plotter.XYs, len(ps))
		for i, p := range ps {
			out[i] = plotter.XY{X: float64(p.n), Y: f(p)}
		}
		return out
	}
	panel := func(title, x, y string) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = x
		p.Y.Label.Text = y
		p.Y.Min = 0
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		return p
	}
	line := func(p *plot.Plot, name string, pts plotter.XYs, c color.Color) error {
		if len(pts) == 0 {
			return nil
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, sc.Color = c, c
		sc.Shape = draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(name, l, sc)
		return nil
	}
	target := func(p *plot.Plot, name string, y float64) {
		f := plotter.NewFunction(func(float64) float64 { return y })
		f.Color = grey
		f.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(f)
		p.Legend.Add(name, f)
		if p.Y.Max < y*1.1 {
			p.Y.Max = y * 1.1
		}
	}
	const objs, repos = "objects", "repositories × 1,000 tags"
	cold := panel("synchronizer: cold apply", objs, "seconds")
	noop := panel("synchronizer: no-op pass", objs, "seconds")
	rss := panel("synchronizer: peak memory", objs, "MiB")
	ratio := panel("synchronizer: cold / floor", objs, "ratio")
	apass := panel("automator: one pass (budget 200/s)", repos, "seconds")
	arss := panel("automator: peak RSS", repos, "MiB")
	for _, err := range []error{
		line(cold, "synchronizer, from process start", xs(sync, func(p point) float64 { return p.cold }), blue),
		line(cold, "floor: raw SSA, 16 in flight", xs(sync, func(p point) float64 { return p.floor }), orange),
		line(noop, "no-op pass (0 writes)", xs(sync, func(p point) float64 { return p.noop }), blue),
		line(rss, "RSS", xs(sync, func(p point) float64 { return p.rss }), blue),
		line(rss, "heap and stacks", xs(sync, func(p point) float64 { return p.anon }), orange),
		line(ratio, "cold / floor", xs(sync, func(p point) float64 { return p.r }), blue),
		line(apass, "automator run --once", xs(auto, func(p point) float64 { return p.cold }), blue),
		line(apass, "floor: remote.List, 8 at a time", xs(auto, func(p point) float64 { return p.floor }), orange),
		line(apass, "without the request budget", xs(auto, func(p point) float64 { return p.unbudgeted }), green),
		line(arss, "peak RSS", xs(auto, func(p point) float64 { return p.rss }), blue),
	} {
		if err != nil {
			return err
		}
	}
	target(noop, "target 0.3 s", 0.3)
	target(rss, "target 128 MiB", 128)
	target(ratio, "target 2.2×", 2.2)
	target(arss, "target 64 MiB", 64)

	const w, h = 30 * vg.Centimeter, 17 * vg.Centimeter
	c := vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(false))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 3, PadX: vg.Centimeter, PadY: vg.Centimeter, PadTop: vg.Millimeter * 3, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 3}
	plots := [][]*plot.Plot{{cold, noop, rss}, {ratio, apass, arss}}
	for _, row := range plots {
		for _, p := range row {
			p.Y.Max *= 1.4 // room for the legend above the curves
		}
	}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
