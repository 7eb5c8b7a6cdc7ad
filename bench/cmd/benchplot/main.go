// Command benchplot keeps the benchmark history that `make bench` builds:
//
//	benchplot record [flags] RESULTS.jsonl   append a run's rows to runs.csv
//	benchplot draw [flags]                   draw p99 against rate as SVG
//
// record reads the JSON lines the load generator writes (loadgen -json) and
// appends one row per idle test, load run and saturation verdict to the CSV
// file of all runs (bench/results/runs.csv), with the run's name, date,
// commit and scenario, and the host calibration taken at its start (-calib:
// the file of loadgen -mode calibrate's line). draw reads that file and writes the chart of p99
// against the offered rate of the latest run of a scenario, the runs before
// it faint (docs/p99.svg). Both use the standard library only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(2)
	}
}

const usage = "usage: benchplot record [flags] RESULTS.jsonl | benchplot draw [flags]"

func run(args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "record":
		return record(args[1:], stderr)
	case "draw":
		return draw(args[1:], stderr)
	default:
		return errors.New(usage)
	}
}

func record(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(stderr)
	csvPath := fs.String("csv", "bench/results/runs.csv", "the CSV file of all runs, created if missing")
	var m Meta
	fs.StringVar(&m.Run, "run", "", "the run's name, unique in the file (required)")
	fs.StringVar(&m.Date, "date", "", `the run's UTC time, "2006-01-02 15:04" (required)`)
	fs.StringVar(&m.Commit, "commit", "", "the commit the run measured")
	fs.StringVar(&m.Scenario, "scenario", "load", "the scenario: load, quick, scale, overload, ...")
	fs.StringVar(&m.Label, "label", "", "a note on the run, such as the settings it changed")
	fs.IntVar(&m.Workers, "workers", 0, "gateway workers")
	calib := fs.String("calib", "", "the JSON line of loadgen -mode calibrate taken at the run's start, in this file: on every row")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if m.Run == "" || m.Date == "" || fs.NArg() != 1 {
		return errors.New("usage: benchplot record -run NAME -date DATE [flags] RESULTS.jsonl")
	}
	if *calib != "" {
		f, err := os.Open(*calib)
		if err != nil {
			return err
		}
		m.Calib, err = ReadCalibration(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *calib, err)
		}
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	rows, err := ParseResults(f, m)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no idle, load, saturation or resume results", fs.Arg(0))
	}
	return Append(*csvPath, rows)
}

func draw(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("draw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	csvPath := fs.String("csv", "bench/results/runs.csv", "the CSV file of all runs")
	scenario := fs.String("scenario", "load", "the scenario whose runs to draw")
	history := fs.Int("history", 6, "how many runs to draw, the latest included")
	out := fs.String("out", "docs/p99.svg", "the SVG file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New("usage: benchplot draw [-csv FILE] [-scenario NAME] [-history N] [-out FILE]")
	}
	f, err := os.Open(*csvPath)
	if err != nil {
		return err
	}
	rows, err := ReadRows(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *csvPath, err)
	}
	var b strings.Builder
	if err := Draw(&b, SeriesOf(rows, *scenario, *history)); err != nil {
		return fmt.Errorf("scenario %s: %w", *scenario, err)
	}
	return writeFile(*out, b.String())
}

// writeFile replaces path with data through a temporary file, so a reader
// never sees half a chart.
func writeFile(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".benchplot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
