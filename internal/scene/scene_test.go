package scene

import (
	"os"
	"testing"

	"gocv.io/x/gocv"
)

func TestDumpSamples(t *testing.T) {
	if os.Getenv("SCENE_DUMP") == "" {
		t.Skip("set SCENE_DUMP=dir to write sample frames")
	}
	dir := os.Getenv("SCENE_DUMP")
	cases := Corpus(1, 4, 4, CodeText)
	for _, c := range cases {
		m, _, err := Render(c.Params)
		if err != nil {
			t.Fatal(err)
		}
		gocv.IMWrite(dir+"/"+c.Name+".png", m)
		m.Close()
	}
}
